//! Wildcards of COPY/ADD sources (Go's `filepath.Match`, as Docker uses) and
//! `.dockerignore` patterns (the same, plus `**` and `!` exceptions).

/// Whether `s` has a wildcard character.
pub(crate) fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// Matches one path component against one pattern component (`*`, `?`, `[...]` with
/// ranges and `^`/`!` negation, `\` escapes). A malformed class never matches.
pub(crate) fn match_component(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_at(&p, &n)
}

fn match_at(p: &[char], n: &[char]) -> bool {
    let Some(&first) = p.first() else {
        return n.is_empty();
    };
    match first {
        '*' => {
            let rest = &p[1..];
            (0..=n.len()).any(|i| n[..i].iter().all(|&c| c != '/') && match_at(rest, &n[i..]))
        }
        '?' => !n.is_empty() && n[0] != '/' && match_at(&p[1..], &n[1..]),
        '[' => {
            let Some((&c, rest_n)) = n.split_first() else {
                return false;
            };
            match class(&p[1..], c) {
                Some((true, used)) => match_at(&p[1 + used..], rest_n),
                _ => false,
            }
        }
        '\\' if p.len() > 1 => !n.is_empty() && n[0] == p[1] && match_at(&p[2..], &n[1..]),
        c => !n.is_empty() && n[0] == c && match_at(&p[1..], &n[1..]),
    }
}

/// Matches `c` against the class starting after `[`; `(matched, chars used incl. ']')`.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('^' | '!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let (lo, used) = if lo == '\\' {
            (*p.get(i + 1)?, 2)
        } else {
            (lo, 1)
        };
        i += used;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
            let (h, used) = if p[i + 1] == '\\' {
                (*p.get(i + 2)?, 3)
            } else {
                (p[i + 1], 2)
            };
            hi = h;
            i += used;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Some((matched != negate, i))
}

/// Matches a `/`-separated path against a pattern whose components may be `**` (any
/// number of components, none included).
fn match_path(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|i| match_path(rest, &path[i..])),
        Some((p, rest)) => match path.split_first() {
            Some((c, path_rest)) => match_component(p, c) && match_path(rest, path_rest),
            None => false,
        },
    }
}

/// The rules of a `.dockerignore` file.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ignore {
    rules: Vec<(Vec<String>, bool)>,
}

impl Ignore {
    /// Parses the file: one pattern a line, `#` comments, `!` exceptions; patterns are
    /// cleaned and taken relative to the context root.
    pub(crate) fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let comps = crate::rootfs::clean(pat);
            if comps.is_empty() {
                continue;
            }
            rules.push((comps, exception));
        }
        Self { rules }
    }

    /// Whether the context path `rel` (relative, `/`-separated) is excluded. A pattern
    /// that matches a directory excludes what is below it.
    pub(crate) fn excluded(&self, rel: &str) -> bool {
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let mut excluded = false;
        for (pattern, exception) in &self.rules {
            let hit = (1..=comps.len()).any(|i| match_path(pattern, &comps[..i]));
            if hit {
                excluded = !exception;
            }
        }
        excluded
    }
}

impl crate::tree::Exclude for Ignore {
    fn excluded(&self, rel: &str) -> bool {
        Ignore::excluded(self, rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert!(match_component("*.txt", "a.txt"));
        assert!(!match_component("*.txt", "a.txtx"));
        assert!(match_component("a?c", "abc"));
        assert!(match_component("[a-c]x", "bx"));
        assert!(!match_component("[^a-c]x", "bx"));
        assert!(match_component("[!a-c]x", "dx"));
        assert!(match_component("\\*", "*"));
        assert!(!match_component("\\*", "a"));
        assert!(!match_component("[a", "a"));
        assert!(match_component("*", ""));
    }

    #[test]
    fn dockerignore() {
        let ig = Ignore::parse("# c\n*.log\n!keep.log\nbuild/\n**/*.tmp\n/secret\n");
        assert!(ig.excluded("x.log"));
        assert!(!ig.excluded("keep.log"));
        assert!(
            !ig.excluded("sub/x.log"),
            "patterns are rooted at the context"
        );
        assert!(ig.excluded("build/out/a"));
        assert!(ig.excluded("a/b/c.tmp"));
        assert!(ig.excluded("c.tmp"));
        assert!(ig.excluded("secret"));
        assert!(!ig.excluded("src/main.rs"));
    }
}
