//! The pest grammar (`dockerfile.pest`) and small helpers around it.

use pest::Parser as _;

#[derive(pest_derive::Parser, Debug)]
#[grammar = "dockerfile.pest"]
pub(crate) struct Grammar;

/// Parses `input` with `rule`; `None` when it does not match.
pub(crate) fn parse(rule: Rule, input: &str) -> Option<pest::iterators::Pairs<'_, Rule>> {
    Grammar::parse(rule, input).ok()
}

/// Byte offsets of the physical lines of `text` (a line keeps its `\n`, the
/// last one may lack it): `[0]` for an empty text. The same lines as the
/// grammar's `file` rule, found with a plain search for `\n`: every line
/// of every file goes through here, and a pest parse of the whole file
/// costs more than the whole rest of the parse (see the README).
pub(crate) fn line_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = Vec::with_capacity(bytes.len() / 24 + 2);
    starts.push(0);
    // memchr's vectorised search: a line costs a few instructions, not a few per byte.
    starts.extend(
        memchr::memchr_iter(b'\n', bytes)
            .map(|i| i + 1)
            .filter(|&s| s < bytes.len()),
    );
    starts
}

/// Physical lines of `text` as the grammar's `file` rule gives them: (byte
/// offset, line with its `\n` when it has one). The reference that
/// [`line_starts`] is tested against.
#[cfg(test)]
pub(crate) fn lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    if let Some(pairs) = parse(Rule::file, text) {
        for pair in pairs.flat_map(|p| p.into_inner()) {
            if matches!(pair.as_rule(), Rule::line_nl | Rule::last_line) {
                out.push((pair.as_span().start(), pair.as_str()));
            }
        }
    }
    out
}

/// Is `c` white space in the sense of Go's `unicode.IsSpace`?
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// `s.trim_start()` (Unicode white space, as [`is_space`]), with a fast path
/// for ASCII: most lines start with a letter or a few blanks, and decoding
/// every character costs more than the test.
pub(crate) fn trim_space_start(s: &str) -> &str {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r' => i += 1,
            // `i` follows ASCII bytes only: a character boundary.
            0x80.. => return s[i..].trim_start(),
            _ => break,
        }
    }
    &s[i..]
}

/// `s.trim_end()`, with the same fast path as [`trim_space_start`].
pub(crate) fn trim_space_end(s: &str) -> &str {
    let b = s.as_bytes();
    let mut n = b.len();
    while n > 0 {
        match b[n - 1] {
            b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r' => n -= 1,
            // `n` precedes ASCII bytes only: a character boundary.
            0x80.. => return s[..n].trim_end(),
            _ => break,
        }
    }
    &s[..n]
}

/// Docker's `[\t\v\f\r ]`, the separator of keyword and arguments and of
/// whitespace-delimited argument lists.
pub(crate) fn is_hspace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{0B}' | '\u{0C}' | '\r')
}

/// [`is_hspace`] on a byte (all of them are ASCII).
pub(crate) fn is_hspace_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0B | 0x0C | b'\r')
}

/// `s.trim_start_matches(is_hspace)`, byte by byte.
pub(crate) fn trim_hspace_start(s: &str) -> &str {
    let i = s
        .bytes()
        .position(|b| !is_hspace_byte(b))
        .unwrap_or(s.len());
    // Only ASCII bytes were skipped: a character boundary.
    &s[i..]
}

/// The grammar's `directive` rule read byte by byte: `#`, Unicode white
/// space, a name (`[A-Za-z][A-Za-z0-9]*`), Go's `\s*`, `=` and a value of at
/// least one character. Gives (name, value) as the rule's pairs would.
pub(crate) fn directive(line: &str) -> Option<(&str, &str)> {
    let after_hash = line.strip_prefix('#')?;
    let body = after_hash.trim_start_matches(is_space);
    let bytes = body.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let name_end = bytes
        .iter()
        .position(|b| !b.is_ascii_alphanumeric())
        .unwrap_or(bytes.len());
    let mut i = name_end;
    while matches!(bytes.get(i), Some(b'\t' | b'\n' | 0x0C | b'\r' | b' ')) {
        i += 1;
    }
    if bytes.get(i) != Some(&b'=') {
        return None;
    }
    // `i` is the ASCII `=`: both slices start on character boundaries.
    let value = &body[i + 1..];
    if value.is_empty() {
        return None;
    }
    Some((&body[..name_end], value))
}

/// The grammar's `json_doc` rule read byte by byte: one JSON value (object,
/// array, string, number, `true`, `false`, `null`) between JSON white space.
/// Nesting deeper than `max_depth` is refused (the caller treats such text
/// as no JSON); the recursion is bounded by it.
pub(crate) fn is_json_document(s: &str, max_depth: usize) -> bool {
    let mut p = JsonScan {
        b: s.as_bytes(),
        i: 0,
        max_depth,
    };
    p.ws();
    if !p.value(0) {
        return false;
    }
    p.ws();
    p.i == p.b.len()
}

struct JsonScan<'a> {
    b: &'a [u8],
    i: usize,
    max_depth: usize,
}

impl JsonScan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'{') => self.container(depth, b'}', true),
            Some(b'[') => self.container(depth, b']', false),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => false,
        }
    }

    /// An array, or an object when `members`: `open ws (item (ws , ws item)*)? ws close`.
    fn container(&mut self, depth: usize, close: u8, members: bool) -> bool {
        if depth >= self.max_depth {
            return false;
        }
        self.i += 1;
        self.ws();
        if self.eat(close) {
            return true;
        }
        loop {
            let item = if members {
                self.string()
                    && {
                        self.ws();
                        self.eat(b':')
                    }
                    && {
                        self.ws();
                        self.value(depth + 1)
                    }
            } else {
                self.value(depth + 1)
            };
            if !item {
                return false;
            }
            self.ws();
            if self.eat(close) {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
            self.ws();
        }
    }

    /// `"` then characters (no `"`, `\\` or control character), the short
    /// escapes or `\\u` and four hex digits, then `"`.
    fn string(&mut self) -> bool {
        if !self.eat(b'"') {
            return false;
        }
        loop {
            match self.peek() {
                None | Some(0x00..=0x1F) => return false,
                Some(b'"') => {
                    self.i += 1;
                    return true;
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return false;
                            }
                            self.i += 5;
                        }
                        _ => return false,
                    }
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> bool {
        self.eat(b'-');
        let digits = |p: &mut Self| {
            let start = p.i;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i > start
        };
        let integer = self.eat(b'0') || (matches!(self.peek(), Some(b'1'..=b'9')) && digits(self));
        if !integer {
            return false;
        }
        // pest's optional groups backtrack: a `.` without digits, or an `e`
        // without them, is left unread (and then fails the document).
        let save = self.i;
        if self.eat(b'.') && !digits(self) {
            self.i = save;
            return true;
        }
        let save = self.i;
        if (self.eat(b'e') || self.eat(b'E')) && {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            !digits(self)
        } {
            self.i = save;
        }
        true
    }
}

/// Decodes a JSON string token (quotes included) the way Go's encoding/json
/// does: lone surrogates become U+FFFD.
pub(crate) fn decode_json_string(tok: &str) -> String {
    let inner = tok
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(tok);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    let hex4 = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            v = v * 16 + chars.next()?.to_digit(16)?;
        }
        Some(v)
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{08}'),
            Some('f') => out.push('\u{0C}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let Some(hi) = hex4(&mut chars) else {
                    out.push('\u{FFFD}');
                    continue;
                };
                if (0xD800..0xDC00).contains(&hi) {
                    let mut look = chars.clone();
                    if look.next() == Some('\\') && look.next() == Some('u') {
                        if let Some(lo) = hex4(&mut look) {
                            if (0xDC00..0xE000).contains(&lo) {
                                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                                chars = look;
                                continue;
                            }
                        }
                    }
                    out.push('\u{FFFD}');
                } else {
                    out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}
