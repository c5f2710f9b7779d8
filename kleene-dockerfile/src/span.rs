//! Source positions.

/// Where a piece of the Dockerfile sits in the source text.
///
/// `start..end` is a byte range into the text given to the parser; `line` and
/// `column` (both 1-based, the column counted in characters) locate `start`,
/// `end_line` and `end_column` locate `end`. A piece assembled from several
/// physical lines (a continued instruction) spans from its first to its last
/// byte, the continuation characters in between included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// Line of `start`, 1-based.
    pub line: usize,
    /// Column of `start`, 1-based, in characters.
    pub column: usize,
    /// Line of `end`, 1-based.
    pub end_line: usize,
    /// Column of `end`, 1-based, in characters.
    pub end_column: usize,
}

impl Span {
    /// The byte range `start..end`.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }

    /// The smallest span covering both `self` and `other`.
    pub fn join(&self, other: &Span) -> Span {
        let (first, _) = if self.start <= other.start {
            (self, other)
        } else {
            (other, self)
        };
        let last = if self.end >= other.end { self } else { other };
        Span {
            start: first.start,
            line: first.line,
            column: first.column,
            end: last.end,
            end_line: last.end_line,
            end_column: last.end_column,
        }
    }
}

/// A value and the span it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spanned<T> {
    /// The value.
    pub node: T,
    /// Where it was written.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Wraps `node` with `span`.
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.node
    }
}

/// Turns byte offsets into line and column numbers.
#[derive(Debug, Clone)]
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// Whether the whole text is ASCII (columns are then byte offsets).
    ascii: bool,
}

impl<'a> SourceMap<'a> {
    /// `line_starts` holds the byte offset of every line, `0` first.
    pub(crate) fn new(text: &'a str, line_starts: Vec<usize>) -> Self {
        SourceMap {
            text,
            line_starts,
            ascii: text.is_ascii(),
        }
    }

    /// Number of lines (at least one, even for an empty text).
    pub(crate) fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// Line `i` (0-based): its byte offset and its text, `\n` included.
    pub(crate) fn line(&self, i: usize) -> (usize, &'a str) {
        let start = self.line_starts.get(i).copied().unwrap_or(self.text.len());
        let end = self
            .line_starts
            .get(i + 1)
            .copied()
            .unwrap_or(self.text.len());
        (start, self.text.get(start..end).unwrap_or(""))
    }

    /// 1-based line and column of byte offset `offset`, looking first at
    /// line `hint` (0-based): the parser knows which line an instruction
    /// starts and ends on, and a search per span was a tenth of the parse.
    fn position_near(&self, offset: usize, hint: Option<usize>) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let on_hint = hint.filter(|&h| {
            self.line_starts.get(h).is_some_and(|&s| s <= offset)
                && self
                    .line_starts
                    .get(h + 1)
                    .is_none_or(|&next| offset < next)
        });
        let idx = match on_hint {
            Some(h) => h,
            None => match self.line_starts.binary_search(&offset) {
                Ok(i) => i,
                Err(i) => i.saturating_sub(1),
            },
        };
        let line_start = self.line_starts.get(idx).copied().unwrap_or(0);
        if self.ascii {
            return (idx + 1, offset.saturating_sub(line_start) + 1);
        }
        let column = self
            .text
            .get(line_start..offset)
            .map(|s| {
                if s.is_ascii() {
                    s.len()
                } else {
                    s.chars().count()
                }
            })
            .unwrap_or(0);
        (idx + 1, column + 1)
    }

    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        self.span_near(start, end, None, None)
    }

    /// [`Self::span`] where `start` and `end` are likely on the 0-based
    /// lines given (any other offset is still placed right).
    pub(crate) fn span_near(
        &self,
        start: usize,
        end: usize,
        start_line: Option<usize>,
        end_line: Option<usize>,
    ) -> Span {
        let end = end.max(start);
        let (line, column) = self.position_near(start, start_line);
        let (end_line, end_column) = self.position_near(end, end_line);
        Span {
            start,
            end,
            line,
            column,
            end_line,
            end_column,
        }
    }
}
