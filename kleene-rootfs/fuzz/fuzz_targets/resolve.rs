//! Builds a small tree (directories, files, relative and absolute symlinks, loops, links
//! climbing out or naming the real directory beside the root) from the input, resolves
//! its paths with every policy and checks the crate against the model: see
//! `../tests/harness/mod.rs`, which `tests/fuzz_corpus.rs` also runs on the seed corpus.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/harness/mod.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::check(&harness::Case::from_bytes(data));
});
