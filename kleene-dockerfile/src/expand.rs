//! Docker's word expansion, done without any shell.
//!
//! The rules are BuildKit's (`frontend/dockerfile/shell`): quotes, the escape
//! character, `$VAR`, `${VAR}` and the modifiers `:-` `-` `:+` `+` `:?` `?`
//! `#` `##` `%` `%%` `/` `//`, and word splitting of unquoted expansions.
//! Nothing is ever executed: `$(cmd)` and backquotes are plain text.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use crate::glob::Pattern;

/// Variables visible to an expansion.
pub trait Env {
    /// The value of `name`, `None` when it is not set.
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// A list of `(name, value)` pairs; a later pair wins over an earlier one.
impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl Env for [(&str, &str)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<T: Env + ?Sized> Env for &T {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// An environment with no variable set.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyEnv;

impl Env for EmptyEnv {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Why a word cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpandError {
    /// `${` without its `}`.
    #[error("syntax error: missing '}}' in {word:?}")]
    MissingBrace {
        /// The word being expanded.
        word: String,
    },
    /// `${}`, `${{x}`, `${:x}`.
    #[error("syntax error: bad substitution in {word:?}")]
    BadSubstitution {
        /// The word being expanded.
        word: String,
    },
    /// `${VAR<c>...}` with a modifier Docker does not know.
    #[error("unsupported modifier ({modifier}) in substitution in {word:?} (expected one of :- - :+ + :? ? # ## % %% / //)")]
    UnsupportedModifier {
        /// The modifier as written.
        modifier: String,
        /// The word being expanded.
        word: String,
    },
    /// `${VAR/pattern` without the `/` and `}` that end it.
    #[error("syntax error: missing '/' in ${{}} in {word:?}")]
    MissingSlash {
        /// The word being expanded.
        word: String,
    },
    /// `${VAR?msg}` / `${VAR:?msg}` with VAR unset (or empty).
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The message given, or Docker's default one.
        message: String,
    },
    /// A quote that is never closed.
    #[error("unexpected end of statement while looking for matching {quote} in {word:?}")]
    UnterminatedQuote {
        /// "single-quote" or "double-quote".
        quote: &'static str,
        /// The word being expanded.
        word: String,
    },
    /// Substitutions nested deeper than the expander follows.
    #[error("substitutions nested more than {limit} deep in {word:?}")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
        /// The word being expanded.
        word: String,
    },
}

/// How deep `${a:-${b:-...}}` may nest; deeper input is refused rather than
/// risking the stack.
pub const MAX_NESTING: usize = 128;

/// Expands words the way Docker does, with a chosen escape character.
///
/// ```
/// use kleene_dockerfile::Expander;
/// let env = [("NAME", "world")];
/// let ex = Expander::new('\\');
/// assert_eq!(ex.expand("hello ${NAME:-nobody}", &env).unwrap(), "hello world");
/// assert_eq!(ex.expand_words("a \"b c\" $NAME", &env).unwrap(), ["a", "b c", "world"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expander {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_unset: bool,
}

impl Default for Expander {
    fn default() -> Self {
        Expander::new('\\')
    }
}

impl Expander {
    /// An expander with `escape` as escape character (`\` or `` ` ``).
    pub fn new(escape: char) -> Self {
        Expander {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
        }
    }

    /// Leave references to unset variables as written instead of expanding
    /// them to the empty string (`$X` stays `$X`).
    pub fn skip_unset(mut self, skip: bool) -> Self {
        self.skip_unset = skip;
        self
    }

    /// Keep quote characters in the result.
    pub fn raw_quotes(mut self, raw: bool) -> Self {
        self.raw_quotes = raw;
        self
    }

    /// Keep escape characters in the result.
    pub fn raw_escapes(mut self, raw: bool) -> Self {
        self.raw_escapes = raw;
        self
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands `word` as one word: quotes removed, variables substituted, no splitting.
    pub fn expand(&self, word: &str, env: &(impl Env + ?Sized)) -> Result<String, ExpandError> {
        self.process(word, env).map(|(w, _)| w)
    }

    /// Expands `word` and splits the result into words at unquoted white space
    /// (white space that came from an unquoted variable splits too).
    pub fn expand_words(
        &self,
        word: &str,
        env: &(impl Env + ?Sized),
    ) -> Result<Vec<String>, ExpandError> {
        self.process(word, env).map(|(_, ws)| ws)
    }

    /// Expands each word of `words` and splits it, joining the results:
    /// for instructions that take a list (e.g. `COPY` sources, `EXPOSE` ports).
    pub fn expand_list(
        &self,
        words: &[String],
        env: &(impl Env + ?Sized),
    ) -> Result<Vec<String>, ExpandError> {
        let mut out = Vec::new();
        for w in words {
            out.extend(self.expand_words(w, env)?);
        }
        Ok(out)
    }

    fn process<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut sw = ShellWord {
            lex: self,
            src: word,
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
            depth: 0,
        };
        sw.process_stop_on(None, self.raw_escapes)
    }
}

/// Expands `word` with escape character `\`. See [`Expander::expand`].
pub fn expand(word: &str, env: &(impl Env + ?Sized)) -> Result<String, ExpandError> {
    Expander::default().expand(word, env)
}

/// Expands and splits `word` with escape character `\`. See [`Expander::expand_words`].
pub fn expand_words(word: &str, env: &(impl Env + ?Sized)) -> Result<Vec<String>, ExpandError> {
    Expander::default().expand_words(word, env)
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct ShellWord<'a, E: Env + ?Sized> {
    lex: &'a Expander,
    src: &'a str,
    pos: usize,
    env: &'a E,
    raw_escapes: bool,
    depth: usize,
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

impl<E: Env + ?Sized> ShellWord<'_, E> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn word(&self) -> String {
        self.src.to_string()
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandError::TooDeep {
                limit: MAX_NESTING,
                word: self.word(),
            });
        }
        self.depth += 1;
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        r
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let s = self.process_dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                '\'' => {
                    let s = self.process_single_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' => {
                    let s = self.process_double_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                _ => {
                    self.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => {
                                words.add_raw_char(c);
                                result.push(c);
                            }
                        }
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if stop.is_some() {
            // Only the callers' own messages reach the user (they know which
            // closing character was missing).
            return Err(ExpandError::MissingBrace { word: self.word() });
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError::UnterminatedQuote {
                        quote: "single-quote",
                        word: self.word(),
                    })
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(ExpandError::UnterminatedQuote {
                        quote: "double-quote",
                        word: self.word(),
                    })
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.lookup(name).map(str::to_string)
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                name.push(ch);
                return name;
            }
            if !(ch.is_alphabetic() || ch.is_numeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(ExpandError::MissingBrace { word: self.word() }),
            Some('{' | '}' | ':') => {
                return Err(ExpandError::BadSubstitution { word: self.word() })
            }
            Some(_) => {}
        }
        let name = self.process_name();
        let ch = self.next();
        let mut modifier = ch.map(String::from).unwrap_or_default();
        match ch {
            Some('}') => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut op = ch;
                let null_is_unset = ch == Some(':');
                if null_is_unset {
                    op = self.next();
                    modifier.extend(op);
                }
                let raw = matches!(op, Some('#' | '%'));
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err(ExpandError::MissingBrace { word: self.word() });
                        }
                        return Err(e);
                    }
                };
                let value = self.lookup(&name);
                if self.lex.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let unset = value.is_none();
                let empty_or_unset = unset || (null_is_unset && value.as_deref() == Some(""));
                let value = value.unwrap_or_default();
                match op {
                    Some('-') => Ok(if empty_or_unset { word } else { value }),
                    Some('+') => Ok(if empty_or_unset { String::new() } else { word }),
                    Some('?') => {
                        if unset {
                            let message = if word.is_empty() {
                                "is not allowed to be unset".to_string()
                            } else {
                                word
                            };
                            return Err(ExpandError::Required { name, message });
                        }
                        if empty_or_unset {
                            let message = if word.is_empty() {
                                "is not allowed to be empty".to_string()
                            } else {
                                word
                            };
                            return Err(ExpandError::Required { name, message });
                        }
                        Ok(value)
                    }
                    Some(c @ ('#' | '%')) => {
                        let (greedy, pat) = match word.strip_prefix(c) {
                            Some(p) => (true, p),
                            None => (false, word.as_str()),
                        };
                        let pattern = Pattern::new(pat);
                        Ok(if c == '#' {
                            pattern.trim_prefix(&value, greedy)
                        } else {
                            pattern.trim_suffix(&value, greedy)
                        })
                    }
                    _ => Err(ExpandError::UnsupportedModifier {
                        modifier,
                        word: self.word(),
                    }),
                }
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err(ExpandError::MissingSlash { word: self.word() });
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err(ExpandError::MissingBrace { word: self.word() });
                        }
                        return Err(e);
                    }
                };
                let value = self.lookup(&name);
                let Some(value) = value else {
                    if self.lex.skip_unset {
                        let sep = if all { "//" } else { "/" };
                        return Ok(format!("${{{name}{sep}{pattern}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                let replacement = unescape(&replacement, self.lex.escape);
                Ok(Pattern::new(&pattern).replace(&value, &replacement, all))
            }
            _ => Err(ExpandError::UnsupportedModifier {
                modifier,
                word: self.word(),
            }),
        }
    }
}

/// Drops escape characters, keeping what they escape (a replacement text was
/// read with its escapes kept, so `\}` and `\/` could be written in it).
fn unescape(s: &str, escape: char) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env() -> Vec<(String, String)> {
        [
            ("PWD", "/home"),
            ("EMPTY", ""),
            ("FILE", "archive.tar.gz"),
            ("SP", "a  b"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn ex(w: &str) -> Result<String, ExpandError> {
        expand(w, &env())
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(ex("$PWD/x").unwrap(), "/home/x");
        assert_eq!(ex("${PWD}x").unwrap(), "/homex");
        assert_eq!(ex("$NOPE-").unwrap(), "-");
    }

    #[test]
    fn defaults_and_alternatives() {
        assert_eq!(ex("${NOPE:-d}").unwrap(), "d");
        assert_eq!(ex("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(ex("${EMPTY-d}").unwrap(), "");
        assert_eq!(ex("${NOPE-d}").unwrap(), "d");
        assert_eq!(ex("${PWD:+alt}").unwrap(), "alt");
        assert_eq!(ex("${EMPTY:+alt}").unwrap(), "");
        assert_eq!(ex("${EMPTY+alt}").unwrap(), "alt");
        assert_eq!(ex("${NOPE+alt}").unwrap(), "");
    }

    #[test]
    fn required() {
        assert_eq!(ex("${PWD:?x}").unwrap(), "/home");
        assert_eq!(ex("${EMPTY?x}").unwrap(), "");
        let e = ex("${NOPE?must be set}").unwrap_err();
        assert_eq!(e.to_string(), "NOPE: must be set");
        let e = ex("${EMPTY:?}").unwrap_err();
        assert_eq!(e.to_string(), "EMPTY: is not allowed to be empty");
        let e = ex("${NOPE:?}").unwrap_err();
        assert_eq!(e.to_string(), "NOPE: is not allowed to be unset");
    }

    #[test]
    fn prefix_suffix() {
        assert_eq!(ex("${FILE#*.}").unwrap(), "tar.gz");
        assert_eq!(ex("${FILE##*.}").unwrap(), "gz");
        assert_eq!(ex("${FILE%.*}").unwrap(), "archive.tar");
        assert_eq!(ex("${FILE%%.*}").unwrap(), "archive");
        assert_eq!(ex("${FILE#nomatch}").unwrap(), "archive.tar.gz");
        assert_eq!(ex("${FILE%%[.]t*}").unwrap(), "archive");
        assert_eq!(ex("${FILE#?}").unwrap(), "rchive.tar.gz");
    }

    #[test]
    fn replace() {
        assert_eq!(ex("${FILE/a/A}").unwrap(), "Archive.tar.gz");
        assert_eq!(ex("${FILE//a/A}").unwrap(), "Archive.tAr.gz");
        assert_eq!(ex("${FILE/.*/}").unwrap(), "archive");
        assert_eq!(ex("${FILE//[aeiou]/_}").unwrap(), "_rch_v_.t_r.gz");
        assert_eq!(ex("${NOPE/a/b}").unwrap(), "");
        assert_eq!(ex("${PWD/\\//|}").unwrap(), "|home");
    }

    #[test]
    fn no_command_substitution() {
        assert_eq!(ex("$(id -u)").unwrap(), "$(id -u)");
        assert_eq!(ex("`id`").unwrap(), "`id`");
    }

    #[test]
    fn splitting() {
        let w = expand_words("x $SP \"$SP\" 'q q'", &env()).unwrap();
        assert_eq!(w, ["x", "a", "b", "a  b", "q q"]);
    }

    #[test]
    fn backtick_escape() {
        let e = Expander::new('`');
        assert_eq!(e.expand("a`$PWD", &env()).unwrap(), "a$PWD");
        assert_eq!(e.expand("c:\\dir", &env()).unwrap(), "c:\\dir");
    }

    #[test]
    fn skip_unset_keeps_text() {
        let e = Expander::default().skip_unset(true);
        assert_eq!(
            e.expand("$NOPE ${NOPE} ${NOPE:-x}", &env()).unwrap(),
            "$NOPE ${NOPE} ${NOPE:-x}"
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(ex("${"), Err(ExpandError::MissingBrace { .. })));
        assert!(matches!(
            ex("${}"),
            Err(ExpandError::BadSubstitution { .. })
        ));
        assert!(matches!(
            ex("${A:=b}"),
            Err(ExpandError::UnsupportedModifier { .. })
        ));
        assert!(matches!(ex("${A/b"), Err(ExpandError::MissingSlash { .. })));
        assert!(matches!(
            ex("'a"),
            Err(ExpandError::UnterminatedQuote { .. })
        ));
        assert!(matches!(
            ex("\"a"),
            Err(ExpandError::UnterminatedQuote { .. })
        ));
        let deep = "${a:-".repeat(1000);
        assert!(matches!(ex(&deep), Err(ExpandError::TooDeep { .. })));
    }
}
