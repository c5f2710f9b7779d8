//! freebsd
