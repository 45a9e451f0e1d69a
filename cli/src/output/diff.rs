//! A line diff (longest common subsequence) printed in the unified format.

/// One line of a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// Every line of `old` and `new`, as kept, removed or added, along a longest common
/// subsequence. Common leading and trailing lines are trimmed before the quadratic part.
pub(crate) fn diff_lines<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Line<'a>> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (a, b) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );

    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let width = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * width + j] = if a[i] == b[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }

    let mut lines: Vec<Line<'a>> = old[..prefix].iter().map(|l| Line::Same(l)).collect();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            lines.push(Line::Same(a[i]));
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * width + j] >= lcs[i * width + j + 1] {
            lines.push(Line::Removed(a[i]));
            i += 1;
        } else {
            lines.push(Line::Added(b[j]));
            j += 1;
        }
    }
    lines.extend(a[i..].iter().map(|l| Line::Removed(l)));
    lines.extend(b[j..].iter().map(|l| Line::Added(l)));
    lines.extend(old[old.len() - suffix..].iter().map(|l| Line::Same(l)));
    lines
}

/// A unified diff of two texts with `--- from` / `+++ to` headers and `@@` hunks; empty when
/// the texts have the same lines.
pub(crate) fn unified(old: &str, new: &str, from: &str, to: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let lines = diff_lines(&old, &new);
    let changed: Vec<usize> = (0..lines.len())
        .filter(|&k| !matches!(lines[k], Line::Same(_)))
        .collect();
    if changed.is_empty() {
        return String::new();
    }

    let mut text = format!("--- {from}\n+++ {to}\n");
    // Group changes whose gaps are short enough to share context.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        match groups.last_mut() {
            Some((_, last)) if k - *last <= 2 * CONTEXT + 1 => *last = k,
            _ => groups.push((k, k)),
        }
    }
    for (first, last) in groups {
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT + 1).min(lines.len());
        let before = &lines[..start];
        let hunk = &lines[start..end];
        let old_before = before
            .iter()
            .filter(|l| !matches!(l, Line::Added(_)))
            .count();
        let new_before = before
            .iter()
            .filter(|l| !matches!(l, Line::Removed(_)))
            .count();
        let old_len = hunk.iter().filter(|l| !matches!(l, Line::Added(_))).count();
        let new_len = hunk
            .iter()
            .filter(|l| !matches!(l, Line::Removed(_)))
            .count();
        text.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(old_before, old_len),
            range(new_before, new_len)
        ));
        for line in hunk {
            let (sign, content) = match line {
                Line::Same(l) => (' ', l),
                Line::Removed(l) => ('-', l),
                Line::Added(l) => ('+', l),
            };
            text.push(sign);
            text.push_str(content);
            text.push('\n');
        }
    }
    text
}

/// A hunk range: `start,len`, 1-based; an empty range names the line before it.
fn range(lines_before: usize, len: usize) -> String {
    if len == 0 {
        format!("{lines_before},0")
    } else if len == 1 {
        format!("{}", lines_before + 1)
    } else {
        format!("{},{len}", lines_before + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_along_a_longest_common_subsequence() {
        let old = ["a", "b", "c", "d"];
        let new = ["a", "c", "x", "d"];
        assert_eq!(
            diff_lines(&old, &new),
            [
                Line::Same("a"),
                Line::Removed("b"),
                Line::Same("c"),
                Line::Added("x"),
                Line::Same("d"),
            ]
        );
    }

    #[test]
    fn identical_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), "");
        assert_eq!(unified("", "", "x", "y"), "");
    }

    #[test]
    fn a_created_resource_is_all_additions() {
        assert_eq!(
            unified(
                "",
                "kind: Route\nname: r\n",
                "route/r (stored)",
                "route/r (applied)"
            ),
            "--- route/r (stored)\n+++ route/r (applied)\n@@ -0,0 +1,2 @@\n+kind: Route\n+name: r\n"
        );
    }

    #[test]
    fn a_deleted_resource_is_all_removals() {
        assert_eq!(
            unified("a\nb\n", "", "f", "t"),
            "--- f\n+++ t\n@@ -1,2 +0,0 @@\n-a\n-b\n"
        );
    }

    #[test]
    fn hunks_keep_three_lines_of_context() {
        let old: String = (1..=20).map(|n| format!("{n}\n")).collect();
        let new: String = (1..=20)
            .map(|n| match n {
                3 => "three\n".to_owned(),
                17 => "seventeen\n".to_owned(),
                n => format!("{n}\n"),
            })
            .collect();
        assert_eq!(
            unified(&old, &new, "a", "b"),
            "--- a\n+++ b\n\
             @@ -1,6 +1,6 @@\n 1\n 2\n-3\n+three\n 4\n 5\n 6\n\
             @@ -14,7 +14,7 @@\n 14\n 15\n 16\n-17\n+seventeen\n 18\n 19\n 20\n"
        );
    }

    #[test]
    fn nearby_changes_share_one_hunk() {
        let old: String = (1..=12).map(|n| format!("{n}\n")).collect();
        let new: String = (1..=12)
            .map(|n| match n {
                3 => "x\n".to_owned(),
                9 => "y\n".to_owned(),
                n => format!("{n}\n"),
            })
            .collect();
        let diff = unified(&old, &new, "a", "b");
        assert_eq!(diff.matches("@@ -").count(), 1, "{diff}");
        assert!(diff.contains("@@ -1,12 +1,12 @@"), "{diff}");
    }
}
