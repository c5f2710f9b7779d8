//! `kleene-monitor`: a program that only runs container monitors, for an engine whose
//! `Config::monitor` names it. kleene-core's own tests do: a test binary's `main` is
//! libtest's and cannot call `kleene_core::init`. Programs do not need it: they are their
//! own monitor.

fn main() {
    kleene_core::init();
    eprintln!(
        "kleene-monitor: the engine starts this program to run a container; it is not a command"
    );
    std::process::exit(2);
}
