//! Shell patterns for `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/repl}`.
//!
//! `*` matches any string, `?` any character, `[...]` one character of a set
//! (`[!...]` or `[^...]` negates it, `a-z` is a range, a leading `]` is literal,
//! an unclosed `[` is literal), and `\c` the character `c` itself.
//! Matching simulates the pattern as a small automaton over the characters, so
//! it takes at most O(text × pattern) per start position and never backtracks.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Char(char),
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Tok {
    fn matches(&self, c: char) -> bool {
        match self {
            Tok::Star => true,
            Tok::Any => true,
            Tok::Char(x) => *x == c,
            Tok::Class { negated, items } => {
                items.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
            }
        }
    }
}

/// A parsed shell pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    toks: Vec<Tok>,
}

fn parse_class(chars: &[char], mut i: usize) -> Option<(Tok, usize)> {
    // chars[i] is just after '['.
    let mut negated = false;
    if matches!(chars.get(i), Some('!' | '^')) {
        negated = true;
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Tok::Class { negated, items }, i + 1));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *chars.get(i)?
        } else {
            c
        };
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i)?;
                i += 1;
            }
            items.push((lo, hi));
        } else {
            items.push((lo, lo));
        }
    }
}

impl Pattern {
    pub(crate) fn new(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                    i += 1;
                }
                '?' => {
                    toks.push(Tok::Any);
                    i += 1;
                }
                '\\' => {
                    match chars.get(i + 1) {
                        Some(n) => toks.push(Tok::Char(*n)),
                        None => toks.push(Tok::Char('\\')),
                    }
                    i += 2;
                }
                '[' => match parse_class(&chars, i + 1) {
                    Some((tok, next)) => {
                        toks.push(tok);
                        i = next;
                    }
                    None => {
                        toks.push(Tok::Char('['));
                        i += 1;
                    }
                },
                _ => {
                    toks.push(Tok::Char(c));
                    i += 1;
                }
            }
        }
        Pattern { toks }
    }

    fn reversed(&self) -> Pattern {
        let mut toks = self.toks.clone();
        toks.reverse();
        Pattern { toks }
    }

    /// Adds state `s` and, through stars, the states after it.
    fn close(&self, states: &mut [bool], mut s: usize) {
        while s <= self.toks.len() && !states[s] {
            states[s] = true;
            if self.toks.get(s) == Some(&Tok::Star) {
                s += 1;
            } else {
                break;
            }
        }
    }

    /// Every `e` such that the pattern matches `text[..e]` (in chars), ascending.
    fn prefix_ends(&self, text: &[char]) -> Vec<usize> {
        let n = self.toks.len();
        let mut ends = Vec::new();
        let mut cur = vec![false; n + 1];
        self.close(&mut cur, 0);
        if cur[n] {
            ends.push(0);
        }
        let mut next = vec![false; n + 1];
        for (i, &c) in text.iter().enumerate() {
            next.iter_mut().for_each(|x| *x = false);
            let mut any = false;
            for (s, tok) in self.toks.iter().enumerate() {
                if cur[s] && tok.matches(c) {
                    any = true;
                    let to = if *tok == Tok::Star { s } else { s + 1 };
                    self.close(&mut next, to);
                }
            }
            std::mem::swap(&mut cur, &mut next);
            if !any {
                break;
            }
            if cur[n] {
                ends.push(i + 1);
            }
        }
        ends
    }

    /// `${VAR#pat}` (shortest) and `${VAR##pat}` (longest).
    pub(crate) fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends = self.prefix_ends(&chars);
        let cut = if longest { ends.last() } else { ends.first() };
        match cut {
            Some(&e) => chars[e..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// `${VAR%pat}` (shortest) and `${VAR%%pat}` (longest).
    pub(crate) fn trim_suffix(&self, value: &str, longest: bool) -> String {
        let mut chars: Vec<char> = value.chars().collect();
        chars.reverse();
        let ends = self.reversed().prefix_ends(&chars);
        let cut = if longest { ends.last() } else { ends.first() };
        match cut {
            Some(&e) => {
                let keep = chars.len() - e;
                chars.reverse();
                chars[..keep].iter().collect()
            }
            None => value.to_string(),
        }
    }

    /// `${VAR/pat/repl}` and `${VAR//pat/repl}`: the leftmost longest match is
    /// replaced; empty matches are not.
    pub(crate) fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::with_capacity(value.len());
        let mut i = 0;
        let mut replaced = false;
        while i < chars.len() {
            if !replaced || all {
                if let Some(&e) = self.prefix_ends(&chars[i..]).last() {
                    if e > 0 {
                        out.push_str(replacement);
                        i += e;
                        replaced = true;
                        continue;
                    }
                }
            }
            out.push(chars[i]);
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_escapes() {
        let p = Pattern::new("[a-c]x");
        assert_eq!(p.trim_prefix("bxy", false), "y");
        assert_eq!(Pattern::new("[!a]").trim_prefix("ab", false), "ab");
        assert_eq!(Pattern::new("[!a]").trim_prefix("ba", false), "a");
        assert_eq!(Pattern::new("[]]").trim_prefix("]a", false), "a");
        assert_eq!(Pattern::new("[ab").trim_prefix("[abc", false), "c");
        assert_eq!(Pattern::new("\\*").trim_prefix("*a", false), "a");
        assert_eq!(Pattern::new("\\*").trim_prefix("ba", false), "ba");
    }

    #[test]
    fn shortest_and_longest() {
        let p = Pattern::new("*/");
        assert_eq!(p.trim_prefix("a/b/c", false), "b/c");
        assert_eq!(p.trim_prefix("a/b/c", true), "c");
        let p = Pattern::new("/*");
        assert_eq!(p.trim_suffix("a/b/c", false), "a/b");
        assert_eq!(p.trim_suffix("a/b/c", true), "a");
    }

    #[test]
    fn replace_first_and_all() {
        let p = Pattern::new("o");
        assert_eq!(p.replace("foo", "0", false), "f0o");
        assert_eq!(p.replace("foo", "0", true), "f00");
        assert_eq!(Pattern::new("").replace("ab", "x", true), "ab");
        assert_eq!(Pattern::new("b*").replace("abcb", "x", false), "ax");
    }

    #[test]
    fn many_stars_stay_fast() {
        let p = Pattern::new(&"*a".repeat(200));
        let text = "a".repeat(2000);
        assert_eq!(p.trim_prefix(&text, false), "a".repeat(1800));
    }
}
