//! Located parse errors.

use crate::span::Span;
use crate::syntax::INSTRUCTION_NAMES;

/// The file name used in messages unless [`ParseError::with_file_name`] sets another.
pub const DEFAULT_FILE_NAME: &str = "Dockerfile";

/// A Dockerfile the parser rejects: what is wrong, and where.
///
/// Displays as `Dockerfile:3:1: unknown instruction "FORM" (expected one of FROM, RUN, ...)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}:{}: {}", .0.file, .0.span.line, .0.span.column, .0.kind)]
pub struct ParseError(Box<Inner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    file: String,
    span: Span,
    kind: ErrorKind,
}

impl ParseError {
    pub(crate) fn new(kind: ErrorKind, span: Span) -> Self {
        ParseError(Box::new(Inner {
            file: DEFAULT_FILE_NAME.to_string(),
            span,
            kind,
        }))
    }

    /// Sets the file name shown in the message (`Dockerfile` by default).
    pub fn with_file_name(mut self, name: impl Into<String>) -> Self {
        self.0.file = name.into();
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// Where the offending text is.
    pub fn span(&self) -> Span {
        self.0.span
    }

    /// The file name used in the message.
    pub fn file(&self) -> &str {
        &self.0.file
    }

    /// 1-based line of the offending text.
    pub fn line(&self) -> usize {
        self.0.span.line
    }

    /// 1-based column of the offending text.
    pub fn column(&self) -> usize {
        self.0.span.column
    }
}

fn expected_instructions() -> String {
    INSTRUCTION_NAMES.join(", ")
}

/// What is wrong with a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file holds no instruction at all (empty, or only comments and blank lines).
    #[error("file with no instructions (expected at least a FROM instruction)")]
    NoInstructions,
    /// Only global ARGs, no FROM.
    #[error("no FROM instruction (expected FROM after the global ARG instructions)")]
    NoFrom,
    /// A keyword that is no Dockerfile instruction.
    #[error(
        "unknown instruction {found:?} (expected one of {})",
        expected_instructions()
    )]
    UnknownInstruction {
        /// The keyword as written.
        found: String,
    },
    /// An instruction other than ARG before the first FROM.
    #[error("instruction {found:?} before the first FROM (expected FROM, or ARG to declare a global build argument)")]
    InstructionBeforeFrom {
        /// The keyword as written.
        found: String,
    },
    /// `ENV NAME` / `LABEL NAME` with no value.
    #[error("{instruction} {name:?} has no value (expected {instruction} NAME=VALUE or {instruction} NAME VALUE)")]
    MissingValue {
        /// ENV or LABEL.
        instruction: &'static str,
        /// The name as written.
        name: String,
    },
    /// A word in the `NAME=VALUE` form without `=`.
    #[error("{instruction}: can't find = in {word:?} (expected NAME=VALUE)")]
    MissingEquals {
        /// ENV or LABEL.
        instruction: &'static str,
        /// The word as written.
        word: String,
    },
    /// A variable name that is empty or holds characters a name cannot.
    #[error("invalid variable name {name:?} in {instruction} (expected a letter or _ followed by letters, digits, _, . or -)")]
    InvalidVariableName {
        /// ENV or ARG.
        instruction: &'static str,
        /// The name as written.
        name: String,
    },
    /// A flag the instruction does not take.
    #[error(
        "unknown flag {flag:?} for {instruction} (expected {})",
        flag_list(expected)
    )]
    UnknownFlag {
        /// The instruction.
        instruction: &'static str,
        /// The flag as written.
        flag: String,
        /// The flags the instruction takes.
        expected: Vec<&'static str>,
    },
    /// `--name` where `--name=VALUE` is needed, or `--name=` for a boolean.
    #[error("flag {flag:?} of {instruction} is missing its value (expected --{name}=VALUE)")]
    FlagMissingValue {
        /// The instruction.
        instruction: &'static str,
        /// The flag as written.
        flag: String,
        /// The flag's name.
        name: String,
    },
    /// A boolean flag with a value other than true or false.
    #[error("flag {flag:?} of {instruction} takes a boolean (expected --{name}, --{name}=true or --{name}=false)")]
    FlagNotBoolean {
        /// The instruction.
        instruction: &'static str,
        /// The flag as written.
        flag: String,
        /// The flag's name.
        name: String,
    },
    /// The same single-valued flag twice.
    #[error("duplicate flag {flag:?} for {instruction} (expected --{name} at most once)")]
    DuplicateFlag {
        /// The instruction.
        instruction: &'static str,
        /// The flag as written.
        flag: String,
        /// The flag's name.
        name: String,
    },
    /// A flag value that does not parse.
    #[error("invalid value {value:?} for flag --{name} of {instruction} (expected {expected})")]
    InvalidFlagValue {
        /// The instruction.
        instruction: &'static str,
        /// The flag's name.
        name: String,
        /// The value as written.
        value: String,
        /// What the value must look like.
        expected: &'static str,
    },
    /// A heredoc whose delimiter line never comes.
    #[error("unterminated heredoc {delimiter:?} (expected a line {delimiter:?} before the end of the file)")]
    UnterminatedHeredoc {
        /// The delimiter word.
        delimiter: String,
    },
    /// A heredoc marker that cannot be read.
    #[error("invalid heredoc {found:?}: {reason}")]
    InvalidHeredoc {
        /// The marker as written.
        found: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// A heredoc where the instruction does not allow one.
    #[error("{instruction} cannot take a heredoc as {position}, found {found:?}")]
    HeredocNotAllowed {
        /// The instruction.
        instruction: &'static str,
        /// Which argument.
        position: &'static str,
        /// The marker as written.
        found: String,
    },
    /// The shell form where only the exec (JSON) form is allowed.
    #[error("{instruction} requires the exec form, found {found:?} (expected a JSON array of strings such as [\"/bin/sh\", \"-c\"])")]
    ExpectedJson {
        /// The instruction.
        instruction: &'static str,
        /// The arguments as written.
        found: String,
    },
    /// A JSON array whose elements are not all strings.
    #[error("JSON array holds something other than strings, found {found:?} (expected an array of strings such as [\"echo\", \"hi\"])")]
    NotStringArray {
        /// The arguments as written.
        found: String,
    },
    /// Too few or too many arguments.
    #[error("{instruction} {requirement}, found {found:?}")]
    WrongArguments {
        /// The instruction.
        instruction: &'static str,
        /// What it requires, e.g. "requires exactly one argument".
        requirement: &'static str,
        /// The arguments as written.
        found: String,
    },
    /// A stage name that is not `[a-z][a-z0-9-_.]*`.
    #[error(
        "invalid stage name {found:?} (expected a letter followed by letters, digits, -, _ or .)"
    )]
    InvalidStageName {
        /// The name as written.
        found: String,
    },
    /// Something wrong in a HEALTHCHECK.
    #[error("HEALTHCHECK: {reason}, found {found:?} (expected {expected})")]
    InvalidHealthcheck {
        /// What is wrong.
        reason: &'static str,
        /// The offending text.
        found: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// An ONBUILD trigger that ONBUILD does not allow.
    #[error("{found:?} isn't allowed as an ONBUILD trigger (expected any instruction but ONBUILD, FROM and MAINTAINER)")]
    InvalidOnbuildTrigger {
        /// The trigger keyword as written.
        found: String,
    },
    /// A VOLUME path that is empty.
    #[error("VOLUME path can not be empty, found {found:?} (expected a path)")]
    EmptyVolume {
        /// The arguments as written.
        found: String,
    },
    /// A parser directive with a bad value.
    #[error("invalid {name} directive value {value:?} (expected {expected})")]
    InvalidDirective {
        /// The directive's name.
        name: String,
        /// The value as written.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The same parser directive twice.
    #[error("only one {name} parser directive can be used (expected each of escape, syntax, check at most once)")]
    DuplicateDirective {
        /// The directive's name.
        name: String,
    },
    /// An ARG or ENV name that is blank.
    #[error("{instruction} names can not be blank, found {found:?} (expected NAME or NAME=VALUE)")]
    BlankName {
        /// The instruction.
        instruction: &'static str,
        /// The word as written.
        found: String,
    },
}

fn flag_list(expected: &[&str]) -> String {
    if expected.is_empty() {
        "no flags".to_string()
    } else {
        let flags: Vec<String> = expected.iter().map(|f| format!("--{f}")).collect();
        format!("one of {}", flags.join(", "))
    }
}
