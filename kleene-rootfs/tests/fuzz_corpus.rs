//! The fuzz target's harness as a normal test: the seed corpus of
//! `fuzz/corpus/resolve`, and inputs from a fixed pseudo-random sequence, so that the
//! target's code is built and run by every `cargo test` (cargo-fuzz needs nightly).

mod harness;

#[test]
fn seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/resolve");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("the seed corpus") {
        let data = std::fs::read(e.expect("an entry").path()).expect("a seed");
        harness::check(&harness::Case::from_bytes(&data));
        n += 1;
    }
    assert!(n >= 20, "only {n} seeds");
}

#[test]
fn pseudo_random_inputs() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..300 {
        let len = usize::try_from(next() % 200).expect("small");
        let data: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        harness::check(&harness::Case::from_bytes(&data));
    }
}
