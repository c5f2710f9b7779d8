//! Lists of variables where a later key wins: a build's ARG and ENV pairs, RUN's
//! environment, labels, and a container's environment over its image's (`KEY=value`).
//!
//! One rule everywhere: a later entry replaces an earlier one with the same key, in the
//! earlier one's place; a new key goes at the end.

/// Puts `item` into `list`: over the entry with the same key, or at the end.
pub(crate) fn upsert<T>(list: &mut Vec<T>, item: T, key: impl Fn(&T) -> &str) {
    match list.iter_mut().find(|e| key(e) == key(&item)) {
        Some(slot) => *slot = item,
        None => list.push(item),
    }
}

/// Merges `items` in order by [`upsert`]: each key once, a later value winning.
pub(crate) fn later_wins<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> &str,
) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        upsert(&mut out, item, &key);
    }
    out
}

/// The key of a `(key, value)` pair.
pub(crate) fn pair_key(pair: &(String, String)) -> &str {
    &pair.0
}

/// Sets `key` to `value` in a list of pairs.
pub(crate) fn set(list: &mut Vec<(String, String)>, key: &str, value: String) {
    upsert(list, (key.to_string(), value), pair_key);
}

/// The name of a `KEY=value` entry (all of it when it has no `=`).
pub(crate) fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// `over` on top of `base`, both `KEY=value` lists: a container's environment over its
/// image's.
pub(crate) fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    later_wins(base.iter().chain(over).cloned(), |e| env_key(e))
}

/// Pairs as `KEY=value` entries.
pub(crate) fn to_env(pairs: &[(String, String)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `KEY=value` entries as pairs, in order; an entry without `=` is left out.
pub(crate) fn from_env(entries: &[String]) -> Vec<(String, String)> {
    entries
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_later_key_wins_in_the_earlier_place() {
        let merged = later_wins(
            pairs(&[("A", "1"), ("B", "2"), ("A", "3"), ("C", "4")]),
            pair_key,
        );
        assert_eq!(merged, pairs(&[("A", "3"), ("B", "2"), ("C", "4")]));
        let mut list = pairs(&[("A", "1")]);
        set(&mut list, "B", "2".into());
        set(&mut list, "A", "x".into());
        assert_eq!(list, pairs(&[("A", "x"), ("B", "2")]));
    }

    #[test]
    fn env_lists_merge_by_name() {
        let base = vec!["PATH=/bin".to_string(), "A=1".into(), "FLAG".into()];
        let over = vec!["A=2".to_string(), "NEW=x=y".into(), "FLAG=on".into()];
        assert_eq!(
            merge_env(&base, &over),
            ["PATH=/bin", "A=2", "FLAG=on", "NEW=x=y"]
        );
        assert_eq!(
            from_env(&over),
            pairs(&[("A", "2"), ("NEW", "x=y"), ("FLAG", "on")])
        );
        assert_eq!(to_env(&pairs(&[("A", "2")])), ["A=2"]);
        assert_eq!(from_env(&["NOVALUE".to_string()]), pairs(&[]));
    }
}
