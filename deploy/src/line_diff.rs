//! A line diff (longest common subsequence) for the text a review compares line by line: the
//! runbooks, and multi-line strings inside templates (the state machine definition). The inputs
//! are a few hundred lines that mostly agree, so the common head and tail are cut first and the
//! quadratic table only covers the changed middle; no diff crate is needed for that.

use serde::Serialize;

/// What one line of a hunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// In both texts (context).
    Same,
    /// Only in the old text.
    Removed,
    /// Only in the new text.
    Added,
}

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// Context, removed or added.
    pub kind: LineKind,
    /// The line, without its line ending.
    pub text: String,
}

/// A run of changed lines with the context around them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hunk {
    /// First line of the hunk in the old text (1-based).
    pub old_start: usize,
    /// First line of the hunk in the new text (1-based).
    pub new_start: usize,
    /// The lines, context included.
    pub lines: Vec<Line>,
}

impl Hunk {
    /// The removed lines.
    pub fn removed(&self) -> impl Iterator<Item = &str> {
        self.lines_of(LineKind::Removed)
    }

    /// The added lines.
    pub fn added(&self) -> impl Iterator<Item = &str> {
        self.lines_of(LineKind::Added)
    }

    fn lines_of(&self, kind: LineKind) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(move |l| l.kind == kind)
            .map(|l| l.text.as_str())
    }

    /// The hunk in unified form: a `@@ -a +b @@` header, then ` `, `-` and `+` lines.
    pub fn unified(&self) -> String {
        let mut out = format!("@@ -{} +{} @@\n", self.old_start, self.new_start);
        for line in &self.lines {
            let sign = match line.kind {
                LineKind::Same => ' ',
                LineKind::Removed => '-',
                LineKind::Added => '+',
            };
            out.push(sign);
            out.push_str(&line.text);
            out.push('\n');
        }
        out
    }
}

/// The hunks turning `old` into `new`, each with up to `context` unchanged lines around its
/// changes; empty when the texts have the same lines.
pub fn diff_lines(old: &str, new: &str, context: usize) -> Vec<Hunk> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = edit_script(&a, &b);
    group(&ops, &a, &b, context)
}

/// One step of the edit script: keep, delete or insert, with the line indexes it refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Removed(usize),
    Added(usize),
}

/// The shortest edit script by longest common subsequence, after cutting the common head and
/// tail.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    // lcs[i][j]: the longest common subsequence of am[i..] and bm[j..].
    let width = bm.len() + 1;
    let mut lcs = vec![0u32; (am.len() + 1) * width];
    for i in (0..am.len()).rev() {
        for j in (0..bm.len()).rev() {
            lcs[i * width + j] = if am[i] == bm[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let mut ops: Vec<Op> = (0..head).map(|i| Op::Same(i, i)).collect();
    let (mut i, mut j) = (0, 0);
    while i < am.len() || j < bm.len() {
        if i < am.len() && j < bm.len() && am[i] == bm[j] {
            ops.push(Op::Same(head + i, head + j));
            i += 1;
            j += 1;
        } else if j == bm.len()
            || (i < am.len() && lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])
        {
            ops.push(Op::Removed(head + i));
            i += 1;
        } else {
            ops.push(Op::Added(head + j));
            j += 1;
        }
    }
    let (a_end, b_end) = (a.len() - tail, b.len() - tail);
    ops.extend((0..tail).map(|k| Op::Same(a_end + k, b_end + k)));
    ops
}

/// Cuts the edit script into hunks: changes closer than twice the context share one hunk.
fn group(ops: &[Op], a: &[&str], b: &[&str], context: usize) -> Vec<Hunk> {
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(k, _)| k)
        .collect();
    let mut hunks = Vec::new();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(context);
        let mut end = changed[k];
        while k + 1 < changed.len() && changed[k + 1] <= end + 2 * context + 1 {
            k += 1;
            end = changed[k];
        }
        let end = (end + context).min(ops.len() - 1);
        // Where the hunk starts in each text: the first line at or after `start` on that side.
        let position = |side: fn(&Op) -> Option<usize>, len: usize| {
            ops[start..]
                .iter()
                .find_map(side)
                .map_or(len + 1, |index| index + 1)
        };
        let lines = ops[start..=end]
            .iter()
            .map(|op| match *op {
                Op::Same(i, _) => Line {
                    kind: LineKind::Same,
                    text: a[i].to_owned(),
                },
                Op::Removed(i) => Line {
                    kind: LineKind::Removed,
                    text: a[i].to_owned(),
                },
                Op::Added(j) => Line {
                    kind: LineKind::Added,
                    text: b[j].to_owned(),
                },
            })
            .collect();
        hunks.push(Hunk {
            old_start: position(old_index, a.len()),
            new_start: position(new_index, b.len()),
            lines,
        });
        k += 1;
    }
    hunks
}

fn old_index(op: &Op) -> Option<usize> {
    match *op {
        Op::Same(i, _) | Op::Removed(i) => Some(i),
        Op::Added(_) => None,
    }
}

fn new_index(op: &Op) -> Option<usize> {
    match *op {
        Op::Same(_, j) | Op::Added(j) => Some(j),
        Op::Removed(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_hunk() {
        assert!(diff_lines("a\nb\n", "a\nb", 2).is_empty());
    }

    #[test]
    fn a_changed_line_is_removed_then_added_with_its_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n";
        let new = "1\n2\n3\nfour\n5\n6\n7\n";
        let hunks = diff_lines(old, new, 1);
        assert_eq!(hunks.len(), 1);
        assert_eq!(hunks[0].unified(), "@@ -3 +3 @@\n 3\n-4\n+four\n 5\n");
        assert_eq!(hunks[0].removed().collect::<Vec<_>>(), ["4"]);
        assert_eq!(hunks[0].added().collect::<Vec<_>>(), ["four"]);
    }

    #[test]
    fn distant_changes_make_separate_hunks_and_insertions_keep_positions() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "new\na\nb\nc\nd\ne\nf\ng\nh\nend\n";
        let hunks = diff_lines(old, new, 1);
        assert_eq!(hunks.len(), 2, "{hunks:?}");
        assert_eq!(hunks[0].unified(), "@@ -1 +1 @@\n+new\n a\n");
        assert_eq!(hunks[1].unified(), "@@ -8 +9 @@\n h\n+end\n");
    }

    #[test]
    fn removals_at_the_end_are_found() {
        let hunks = diff_lines("a\nb\nc\n", "a\n", 0);
        assert_eq!(hunks.len(), 1);
        assert_eq!(hunks[0].removed().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(hunks[0].old_start, 2);
    }
}
