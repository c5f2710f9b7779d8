//! Property tests: no input makes the parser or the expander panic, and every
//! span it reports lies inside the input.
#![allow(clippy::unwrap_used)]

use kleene_dockerfile::{dump, parse, parse_syntax, Expander, Node, Span};
use proptest::prelude::*;

const TOKENS: &[&str] = &[
    "FROM",
    "from",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "NONE",
    "AS",
    " ",
    " ",
    "\t",
    "\n",
    "\n",
    "\r\n",
    "\\",
    "\\\n",
    "`",
    "`\n",
    "#",
    "# escape=`\n",
    "# syntax=x\n",
    "# check=skip=all\n",
    "--",
    "--from=",
    "--link",
    "--mount=type=cache",
    "--chown",
    "=",
    "\"",
    "'",
    "[",
    "]",
    ",",
    "[\"a\", \"b\"]",
    "{",
    "}",
    "$",
    "${",
    "${A:-",
    "${A/",
    "${A#",
    "%%",
    "}",
    "<<",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "EOF",
    "\tEOF",
    "3<<X",
    "X",
    "a",
    "b",
    "/x",
    "\u{e9}",
    "\u{a0}",
    "\u{feff}",
    "\\u0000",
    "1",
    "-",
    ":",
    "@",
    "*",
    "?",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|t| t.concat())
}

fn check_span(text: &str, span: &Span) {
    assert!(span.start <= span.end, "{span:?}");
    assert!(span.end <= text.len(), "{span:?} beyond {}", text.len());
    assert!(
        text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
        "{span:?}"
    );
    assert!(
        span.line >= 1 && span.column >= 1 && span.end_line >= span.line,
        "{span:?}"
    );
}

fn check_node(text: &str, node: &Node, ex: &Expander) {
    check_span(text, &node.span);
    check_span(text, &node.keyword_span);
    for f in &node.flags {
        check_span(text, &f.span);
    }
    for a in &node.args {
        check_span(text, &a.span);
        let _ = ex.expand(&a.value, &[("A", "x y"), ("EMPTY", "")]);
        let _ = ex.expand_words(&a.value, &[("A", "x y")]);
    }
    for h in &node.heredocs {
        check_span(text, &h.span);
    }
    if let Some(sub) = &node.sub {
        check_node(text, sub, ex);
    }
}

fn exercise(text: &str) {
    match parse_syntax(text) {
        Ok(tree) => {
            let d = dump(&tree);
            assert_eq!(d.lines().count(), tree.nodes.len());
            let ex = Expander::new(tree.escape);
            for node in &tree.nodes {
                check_node(text, node, &ex);
            }
        }
        Err(e) => check_span(text, &e.span()),
    }
    if let Err(e) = parse(text) {
        check_span(text, &e.span());
        assert!(!e.to_string().is_empty());
    }
    let _ = Expander::default().expand_words(text, &[("A", "1")]);
    let _ = Expander::new('`')
        .skip_unset(true)
        .expand(text, &[("A", "1")]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn dockerfile_token_soup_never_panics(text in token_soup()) {
        exercise(&text);
    }

    #[test]
    fn soup_after_a_from_never_panics(text in token_soup()) {
        exercise(&format!("FROM a\n{text}"));
    }
}

#[test]
fn pathological_inputs_terminate() {
    exercise(&"ONBUILD ".repeat(10_000));
    exercise(&format!("FROM a\nCMD {}", "[".repeat(100_000)));
    exercise(&format!("FROM a\nRUN {}", "${a:-".repeat(50_000)));
    exercise(&format!("FROM a\nRUN {}", "\\\n".repeat(50_000)));
    exercise(&format!("FROM a\n{}", "RUN <<EOF\n".repeat(5_000)));
    exercise(&format!("FROM a\nENV {}", "\"".repeat(50_001)));
}
