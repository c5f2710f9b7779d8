//! Prints the syntax tree of each Dockerfile given, in BuildKit's dump format.
//!
//! `cargo run -p kleene-dockerfile --example dump -- FILE...`

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        anyhow::bail!("usage: dump FILE...");
    }
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
        match kleene_dockerfile::dump_str(&text) {
            Ok(dump) => print!("{dump}"),
            Err(e) => {
                eprintln!("{}", e.with_file_name(file));
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
