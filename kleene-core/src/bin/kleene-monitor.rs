//! `kleene-monitor`: runs one container and records how it ended. Started by the engine;
//! see `kleene_core::monitor_main`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(kleene_core::monitor_main(&args));
}
