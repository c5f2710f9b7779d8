//! Parses arbitrary input as a Dockerfile, dumps it, and expands every
//! argument: nothing may panic, loop or blow the stack.
#![no_main]

use kleene_dockerfile::{dump, parse, parse_syntax, Expander};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = [("PWD", "/home"), ("EMPTY", ""), ("A", "a b  c")];
    if let Ok(tree) = parse_syntax(text) {
        let _ = dump(&tree);
        let ex = Expander::new(tree.escape);
        for node in &tree.nodes {
            for arg in &node.args {
                let _ = ex.expand(&arg.value, &env);
                let _ = ex.expand_words(&arg.value, &env);
            }
        }
    }
    let _ = parse(text);
    let _ = Expander::new('\\').expand_words(text, &env);
    let _ = Expander::new('`').skip_unset(true).expand(text, &env);
});
