//! pf
