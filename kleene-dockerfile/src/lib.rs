#![doc = include_str!("../README.md")]

mod error;
mod expand;
mod glob;
mod grammar;
mod image_ref;
mod instruction;
mod span;
mod syntax;

pub use error::{ErrorKind, ParseError, DEFAULT_FILE_NAME};
pub use expand::{expand, expand_words, EmptyEnv, Env, ExpandError, Expander, MAX_NESTING};
pub use image_ref::{ImageRef, ImageRefError};
pub use instruction::{
    Add, ArgDecl, Copy, Dockerfile, From, Healthcheck, HealthcheckOptions, ImageError, Instruction,
    KeyValue, Onbuild, Run, RunFlags, ShellOrExec, Stage,
};
pub use span::{Span, Spanned};
pub use syntax::{
    dump, go_quote, parse_syntax, Directive, Flag, Heredoc, Keyword, Node, SyntaxTree, Warning,
    Word, INSTRUCTION_NAMES,
};

/// Parses `text` and prints its syntax tree in BuildKit's dump format.
pub fn dump_str(text: &str) -> Result<String, ParseError> {
    parse_syntax(text).map(|t| dump(&t))
}

/// Parses and validates `text` into a [`Dockerfile`].
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    Dockerfile::parse(text)
}
