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
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let bytes = text.as_bytes();
    let mut starts = Vec::with_capacity(bytes.len() / 24 + 2);
    starts.push(0);
    let mut push = |i: usize| {
        if i + 1 < bytes.len() {
            starts.push(i + 1);
        }
    };
    // Eight bytes at a time: a chunk without `\n` is skipped whole.
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ NEWLINES;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            for (j, &b) in chunk.iter().enumerate() {
                if b == b'\n' {
                    push(base + j);
                }
            }
        }
        base += 8;
    }
    for (j, &b) in chunks.remainder().iter().enumerate() {
        if b == b'\n' {
            push(base + j);
        }
    }
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

/// Docker's `[\t\v\f\r ]`, the separator of keyword and arguments and of
/// whitespace-delimited argument lists.
pub(crate) fn is_hspace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{0B}' | '\u{0C}' | '\r')
}

/// Depth of bracket nesting outside JSON strings, to keep the recursive JSON
/// rule away from deep input.
pub(crate) fn json_depth(s: &str) -> usize {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut in_str = false;
    let mut esc = false;
    for c in s.chars() {
        if in_str {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
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
