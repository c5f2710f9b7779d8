//! Every validation error: its kind, its location, and its message.
#![allow(clippy::unwrap_used)]

use kleene_dockerfile::{parse, ErrorKind, ParseError};

fn err(text: &str) -> ParseError {
    match parse(text) {
        Ok(df) => panic!("accepted {text:?}: {df:?}"),
        Err(e) => e,
    }
}

fn at(e: &ParseError) -> (usize, usize) {
    (e.line(), e.column())
}

#[test]
fn unknown_instruction() {
    let e = err("FROM a\nRUN x\nFORM b\n");
    assert!(matches!(e.kind(), ErrorKind::UnknownInstruction { found } if found == "FORM"));
    assert_eq!(at(&e), (3, 1));
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "Dockerfile:3:1: unknown instruction \"FORM\" (expected one of FROM, RUN, CMD,"
        ),
        "{msg}"
    );
    assert!(msg.ends_with("HEALTHCHECK, SHELL)"), "{msg}");
    let e = err("FROM a\nONBUILD FORM x\n");
    assert_eq!(at(&e), (2, 9));
}

#[test]
fn file_name_in_message() {
    let e = err("FORM a").with_file_name("build/Dockerfile.dev");
    assert!(
        e.to_string().starts_with("build/Dockerfile.dev:1:1: "),
        "{e}"
    );
}

#[test]
fn instruction_before_from() {
    let e = err("ARG A\n  RUN x\nFROM a\n");
    assert!(matches!(e.kind(), ErrorKind::InstructionBeforeFrom { found } if found == "RUN"));
    assert_eq!(at(&e), (2, 3));
    assert!(
        e.to_string()
            .contains("instruction \"RUN\" before the first FROM (expected FROM"),
        "{e}"
    );
    let e = err("ARG A\n");
    assert_eq!(e.kind(), &ErrorKind::NoFrom, "{e}");
    assert!(
        e.to_string()
            .starts_with("Dockerfile:1:1: no FROM instruction (expected FROM"),
        "{e}"
    );
}

#[test]
fn empty_and_only_comments() {
    for text in [
        "",
        "\n\n",
        "# a comment\n\n# another\n",
        "   \n\t\n",
        "\u{feff}",
    ] {
        let e = err(text);
        assert_eq!(e.kind(), &ErrorKind::NoInstructions, "{text:?}");
        assert!(e.to_string().contains("file with no instructions"), "{e}");
    }
}

#[test]
fn env_without_value() {
    let e = err("FROM a\n\nENV PATH\n");
    assert!(
        matches!(e.kind(), ErrorKind::MissingValue { instruction: "ENV", name } if name == "PATH")
    );
    assert_eq!(at(&e), (3, 5));
    assert!(
        e.to_string()
            .contains("ENV \"PATH\" has no value (expected ENV NAME=VALUE"),
        "{e}"
    );
    let e = err("FROM a\nLABEL x\n");
    assert!(matches!(
        e.kind(),
        ErrorKind::MissingValue {
            instruction: "LABEL",
            ..
        }
    ));
    let e = err("FROM a\nENV A=1 B\n");
    assert!(matches!(e.kind(), ErrorKind::MissingEquals { word, .. } if word == "B"));
    assert_eq!(at(&e), (2, 9));
    let e = err("FROM a\nENV\n");
    assert!(matches!(
        e.kind(),
        ErrorKind::WrongArguments {
            instruction: "ENV",
            ..
        }
    ));
}

#[test]
fn invalid_variable_names() {
    let e = err("FROM a\nENV 1A=x\n");
    assert!(
        matches!(e.kind(), ErrorKind::InvalidVariableName { instruction: "ENV", name } if name == "1A")
    );
    assert_eq!(at(&e), (2, 5));
    assert!(
        e.to_string()
            .contains("invalid variable name \"1A\" in ENV (expected"),
        "{e}"
    );
    let e = err("ARG a{b}=1\nFROM a\n");
    assert!(matches!(
        e.kind(),
        ErrorKind::InvalidVariableName {
            instruction: "ARG",
            ..
        }
    ));
    assert_eq!(at(&e), (1, 5));
    let e = err("FROM a\nARG =x\n");
    assert!(matches!(
        e.kind(),
        ErrorKind::BlankName {
            instruction: "ARG",
            ..
        }
    ));
    let e = err("FROM a\nENV =x\n");
    assert!(matches!(
        e.kind(),
        ErrorKind::BlankName {
            instruction: "ENV",
            ..
        }
    ));
    // A name from a variable is the engine's to check, after expansion.
    parse("FROM a\nARG ${X}=1\n").unwrap();
}

#[test]
fn unknown_flags() {
    let e = err("FROM a\nCOPY --bogus=1 a b\n");
    assert!(
        matches!(e.kind(), ErrorKind::UnknownFlag { instruction: "COPY", flag, .. } if flag == "--bogus=1")
    );
    assert_eq!(at(&e), (2, 6));
    assert!(
        e.to_string()
            .contains("unknown flag \"--bogus=1\" for COPY (expected one of --from, --chown"),
        "{e}"
    );
    let e = err("FROM a\nUSER --x=1 me\n");
    assert!(e.to_string().contains("(expected no flags)"), "{e}");
    let e = err("FROM --plattform=x a\n");
    assert!(matches!(
        e.kind(),
        ErrorKind::UnknownFlag {
            instruction: "FROM",
            ..
        }
    ));
    let e = err("FROM a\nHEALTHCHECK --interval=1s NONE\n");
    assert!(matches!(
        e.kind(),
        ErrorKind::UnknownFlag {
            instruction: "HEALTHCHECK",
            ..
        }
    ));
}

#[test]
fn flag_values() {
    let e = err("FROM a\nCOPY --from a b\n");
    assert!(matches!(e.kind(), ErrorKind::FlagMissingValue { name, .. } if name == "from"));
    assert!(
        e.to_string()
            .contains("is missing its value (expected --from=VALUE)"),
        "{e}"
    );
    let e = err("FROM a\nCOPY --link= a b\n");
    assert!(matches!(e.kind(), ErrorKind::FlagMissingValue { name, .. } if name == "link"));
    let e = err("FROM a\nCOPY --link=maybe a b\n");
    assert!(matches!(e.kind(), ErrorKind::FlagNotBoolean { .. }));
    let e = err("FROM a\nCOPY --from=a --from=b a b\n");
    assert!(matches!(e.kind(), ErrorKind::DuplicateFlag { .. }));
    assert_eq!(at(&e), (2, 15));
    let e = err("FROM a\nHEALTHCHECK --interval=soon CMD x\n");
    assert!(matches!(e.kind(), ErrorKind::InvalidFlagValue { name, .. } if name == "interval"));
    let e = err("FROM a\nHEALTHCHECK --timeout=10us CMD x\n");
    assert!(e.to_string().contains("at least 1ms"), "{e}");
    let e = err("FROM a\nHEALTHCHECK --retries=-1 CMD x\n");
    assert!(matches!(e.kind(), ErrorKind::InvalidFlagValue { name, .. } if name == "retries"));
}

#[test]
fn unterminated_heredoc() {
    let e = err("FROM a\nRUN <<EOF\necho hi\n");
    assert!(matches!(e.kind(), ErrorKind::UnterminatedHeredoc { delimiter } if delimiter == "EOF"));
    assert_eq!(at(&e), (2, 1));
    assert!(
        e.to_string()
            .contains("unterminated heredoc \"EOF\" (expected a line \"EOF\""),
        "{e}"
    );
    let e = err("FROM a\nCOPY <<A <<B /x\na\nA\nb\n");
    assert!(matches!(e.kind(), ErrorKind::UnterminatedHeredoc { delimiter } if delimiter == "B"));
    let e = err("FROM a\nCOPY a <<EOF\nx\nEOF\n");
    assert!(matches!(e.kind(), ErrorKind::HeredocNotAllowed { .. }));
}

#[test]
fn json_required_or_malformed() {
    let e = err("FROM a\nSHELL /bin/sh -c\n");
    assert!(
        matches!(e.kind(), ErrorKind::ExpectedJson { instruction: "SHELL", found } if found == "/bin/sh -c")
    );
    assert_eq!(at(&e), (2, 7));
    assert!(
        e.to_string()
            .contains("SHELL requires the exec form, found \"/bin/sh -c\" (expected a JSON array"),
        "{e}"
    );
    let e = err("FROM a\nSHELL [\"sh\", \"-c\"\n");
    assert!(matches!(e.kind(), ErrorKind::ExpectedJson { .. }));
    let e = err("FROM a\nCMD [ \"echo\", [ \"nested json\" ] ]\n");
    assert!(matches!(e.kind(), ErrorKind::NotStringArray { .. }));
    assert_eq!(at(&e), (2, 5));
    let e = err("FROM a\nRUN [1, 2]\n");
    assert!(matches!(e.kind(), ErrorKind::NotStringArray { .. }));
}

#[test]
fn argument_counts() {
    for (text, instr) in [
        ("FROM a\nUSER\n", "USER"),
        ("FROM a\nWORKDIR\n", "WORKDIR"),
        ("FROM a\nSTOPSIGNAL\n", "STOPSIGNAL"),
        ("FROM a\nMAINTAINER\n", "MAINTAINER"),
        ("FROM a\nEXPOSE\n", "EXPOSE"),
        ("FROM a\nVOLUME\n", "VOLUME"),
        ("FROM a\nCOPY onlyone\n", "COPY"),
        ("FROM a\nADD onlyone\n", "ADD"),
        ("FROM a\nRUN\n", "RUN"),
        ("FROM a\nARG\n", "ARG"),
        ("FROM a\nLABEL\n", "LABEL"),
        ("FROM a\nONBUILD\n", "ONBUILD"),
        ("FROM a\nHEALTHCHECK\n", "HEALTHCHECK"),
        ("FROM a\nSHELL []\n", "SHELL"),
        ("FROM a b\n", "FROM"),
        ("FROM\n", "FROM"),
    ] {
        let e = err(text);
        assert!(
            matches!(e.kind(), ErrorKind::WrongArguments { instruction, .. } if *instruction == instr),
            "{text:?}: {e}"
        );
    }
}

#[test]
fn other_instruction_errors() {
    let e = err("FROM a AS 1st\n");
    assert!(matches!(e.kind(), ErrorKind::InvalidStageName { found } if found == "1st"));
    assert_eq!(at(&e), (1, 11));
    let e = err("FROM a\nONBUILD ONBUILD RUN x\n");
    assert!(matches!(e.kind(), ErrorKind::InvalidOnbuildTrigger { .. }));
    let e = err("FROM a\nONBUILD FROM b\n");
    assert!(matches!(e.kind(), ErrorKind::InvalidOnbuildTrigger { .. }));
    let e = err("FROM a\nVOLUME [\"\"]\n");
    assert!(matches!(e.kind(), ErrorKind::EmptyVolume { .. }));
    let e = err("FROM a\nHEALTHCHECK CONNECT TCP 7000\n");
    assert!(matches!(e.kind(), ErrorKind::InvalidHealthcheck { .. }));
    let e = err("FROM a\nHEALTHCHECK NONE x\n");
    assert!(matches!(e.kind(), ErrorKind::InvalidHealthcheck { .. }));
    let e = err("FROM a\nHEALTHCHECK CMD\n");
    assert!(matches!(e.kind(), ErrorKind::InvalidHealthcheck { .. }));
}

#[test]
fn directive_errors() {
    let e = err("# escape=x\nFROM a\n");
    assert!(matches!(e.kind(), ErrorKind::InvalidDirective { name, .. } if name == "escape"));
    assert_eq!(at(&e), (1, 1));
    let e = err("# syntax=a\n# syntax=b\nFROM a\n");
    assert!(matches!(e.kind(), ErrorKind::DuplicateDirective { name } if name == "syntax"));
    assert_eq!(at(&e), (2, 1));
}
