//! Two versions of a value, shown as a line diff a person can read.
//!
//! **Contract.** [`ValueDiff::new`] takes the two texts as the conflict log stores them (as
//! PostgreSQL prints them in this region). When both are JSON objects or arrays (Superset keeps
//! `position_json`, `json_metadata`, `params` and the like as JSON text), both are pretty-printed
//! with sorted keys first, so the diff shows the keys that differ rather than one long changed
//! line. The diff is a longest-common-subsequence of lines, with unchanged runs longer than
//! twice the context collapsed.
//!
//! **Why our own few lines.** The values are at most a few thousand lines; an LCS table over the
//! lines between the common prefix and suffix is small, and a dependency for it is not worth it.
//! Past [`MAX_CELLS`] the diff gives up on alignment and shows one side removed, the other added.

use serde_json::Value;

/// Largest LCS table (lines × lines) computed; beyond it both sides are shown whole.
pub const MAX_CELLS: usize = 4_000_000;

/// Unchanged lines shown around each change.
pub const CONTEXT: usize = 3;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Same(String),
    Removed(String),
    Added(String),
    /// `n` unchanged lines not shown.
    Skipped(usize),
}

/// The line diff of two values (module docs).
#[derive(Debug, Clone)]
pub struct ValueDiff {
    /// Whether both sides were JSON and were pretty-printed.
    pub json: bool,
    pub lines: Vec<Line>,
}

/// `text` pretty-printed with sorted keys, when it is a JSON object or array.
pub fn pretty_json(text: &str) -> Option<String> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    let value: Value = serde_json::from_str(text).ok()?;
    // serde_json's map is ordered by key unless `preserve_order` is on; sort explicitly.
    serde_json::to_string_pretty(&sorted(value)).ok()
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

impl ValueDiff {
    /// The diff from `old` to `new`; a missing value (SQL NULL) is no lines.
    pub fn new(old: Option<&str>, new: Option<&str>) -> Self {
        let pretty = (old.map(pretty_json), new.map(pretty_json));
        let json = matches!(pretty, (Some(Some(_)) | None, Some(Some(_)) | None))
            && (old.is_some() || new.is_some());
        let text = |raw: Option<&str>, pretty: Option<Option<String>>| -> String {
            match (raw, pretty) {
                (Some(_), Some(Some(p))) if json => p,
                (Some(raw), _) => raw.to_owned(),
                (None, _) => String::new(),
            }
        };
        let a = text(old, pretty.0);
        let b = text(new, pretty.1);
        let a: Vec<&str> = if old.is_some() {
            a.lines().collect()
        } else {
            Vec::new()
        };
        let b: Vec<&str> = if new.is_some() {
            b.lines().collect()
        } else {
            Vec::new()
        };
        ValueDiff {
            json,
            lines: collapse(lines(&a, &b), CONTEXT),
        }
    }

    /// Whether the two sides have the same lines.
    pub fn is_same(&self) -> bool {
        self.lines
            .iter()
            .all(|l| matches!(l, Line::Same(_) | Line::Skipped(_)))
    }

    /// The diff as text lines: `  same`, `- removed`, `+ added`, `  … n unchanged lines`.
    pub fn rendered(&self) -> Vec<String> {
        self.lines
            .iter()
            .map(|line| match line {
                Line::Same(l) => format!("  {l}"),
                Line::Removed(l) => format!("- {l}"),
                Line::Added(l) => format!("+ {l}"),
                Line::Skipped(n) => format!("  … {n} unchanged line(s)"),
            })
            .collect()
    }
}

/// The full line diff of `a` to `b`.
fn lines(a: &[&str], b: &[&str]) -> Vec<Line> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a_rest, b_rest) = (
        a.get(prefix..).unwrap_or_default(),
        b.get(prefix..).unwrap_or_default(),
    );
    let suffix = a_rest
        .iter()
        .rev()
        .zip(b_rest.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let a_mid = a_rest.get(..a_rest.len() - suffix).unwrap_or_default();
    let b_mid = b_rest.get(..b_rest.len() - suffix).unwrap_or_default();
    let mut out: Vec<Line> = a
        .iter()
        .take(prefix)
        .map(|l| Line::Same((*l).to_owned()))
        .collect();
    out.extend(middle(a_mid, b_mid));
    out.extend(
        a_rest
            .iter()
            .skip(a_rest.len() - suffix)
            .map(|l| Line::Same((*l).to_owned())),
    );
    out
}

/// The LCS diff of the differing middle parts.
fn middle(a: &[&str], b: &[&str]) -> Vec<Line> {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > MAX_CELLS || n == 0 || m == 0 {
        let mut out: Vec<Line> = a.iter().map(|l| Line::Removed((*l).to_owned())).collect();
        out.extend(b.iter().map(|l| Line::Added((*l).to_owned())));
        return out;
    }
    // lcs[i * (m + 1) + j]: the LCS length of a[i..] and b[j..].
    let width = m + 1;
    let mut lcs = vec![0u32; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let value = if a.get(i) == b.get(j) {
                lcs.get((i + 1) * width + j + 1).copied().unwrap_or(0) + 1
            } else {
                let down = lcs.get((i + 1) * width + j).copied().unwrap_or(0);
                let right = lcs.get(i * width + j + 1).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(cell) = lcs.get_mut(i * width + j) {
                *cell = value;
            }
        }
    }
    let at = |i: usize, j: usize| lcs.get(i * width + j).copied().unwrap_or(0);
    let mut out = Vec::with_capacity(n + m);
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                out.push(Line::Same((*x).to_owned()));
                i += 1;
                j += 1;
            }
            (Some(x), Some(_)) if at(i + 1, j) >= at(i, j + 1) => {
                out.push(Line::Removed((*x).to_owned()));
                i += 1;
            }
            (_, Some(y)) => {
                out.push(Line::Added((*y).to_owned()));
                j += 1;
            }
            (Some(x), None) => {
                out.push(Line::Removed((*x).to_owned()));
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Replaces unchanged runs longer than `2 * context` (away from changes) by [`Line::Skipped`].
fn collapse(lines: Vec<Line>, context: usize) -> Vec<Line> {
    let changed: Vec<bool> = lines.iter().map(|l| !matches!(l, Line::Same(_))).collect();
    if !changed.contains(&true) {
        return lines;
    }
    let near = |i: usize| {
        let from = i.saturating_sub(context);
        let to = (i + context + 1).min(changed.len());
        changed.get(from..to).is_some_and(|w| w.contains(&true))
    };
    let mut out = Vec::new();
    let mut skipped = 0;
    for (i, line) in lines.into_iter().enumerate() {
        if near(i) {
            if skipped > 0 {
                out.push(Line::Skipped(skipped));
                skipped = 0;
            }
            out.push(line);
        } else {
            skipped += 1;
        }
    }
    if skipped > 0 {
        out.push(Line::Skipped(skipped));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_show_as_one_line_each() {
        let diff = ValueDiff::new(Some("Title from us"), Some("Title from eu"));
        assert!(!diff.json);
        assert_eq!(diff.rendered(), ["- Title from us", "+ Title from eu"]);
    }

    #[test]
    fn json_is_pretty_printed_so_only_the_changed_key_differs() {
        let old = r#"{"b": 1, "a": {"x": [1, 2]}, "c": "same"}"#;
        let new = r#"{"a": {"x": [1, 3]}, "b": 1, "c": "same"}"#;
        let diff = ValueDiff::new(Some(old), Some(new));
        assert!(diff.json);
        let removed: Vec<&Line> = diff
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Removed(_) | Line::Added(_)))
            .collect();
        assert_eq!(
            removed,
            [
                &Line::Removed("      2".into()),
                &Line::Added("      3".into())
            ]
        );
    }

    #[test]
    fn long_unchanged_runs_collapse_and_null_is_empty() {
        let a: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        let mut b = a.clone();
        b[25] = "changed".into();
        let diff = ValueDiff::new(Some(&a.join("\n")), Some(&b.join("\n")));
        assert_eq!(diff.lines.first(), Some(&Line::Skipped(22)));
        assert_eq!(diff.lines.last(), Some(&Line::Skipped(21)));
        let gone = ValueDiff::new(Some("x"), None);
        assert_eq!(gone.rendered(), ["- x"]);
        assert!(ValueDiff::new(Some("same"), Some("same")).is_same());
    }
}
