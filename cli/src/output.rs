//! What gatewayctl prints: aligned tables, ages, line diffs, and stdout that tolerates a
//! closed pipe (`gatewayctl get routes | head -1`).

use std::{
    io::Write as _,
    time::{Duration, SystemTime},
};

mod diff;

pub(crate) use diff::unified;

/// Writes results to stdout. A closed pipe is not an error worth a panic.
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// [`out`] with a newline.
pub(crate) fn outln(line: &str) {
    out(&format!("{line}\n"));
}

/// Columns padded to their widest cell, two spaces apart, no trailing spaces.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

// === impl Table ===

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len());
        self.rows.push(row);
    }

    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// How long ago a timestamp was: `2s ago`, `5m ago`, `3h ago`, `2d ago`; `-` when unset.
pub(crate) fn age(now: SystemTime, then: Option<&prost_types::Timestamp>) -> String {
    let Some(then) = then.and_then(|t| SystemTime::try_from(*t).ok()) else {
        return "-".into();
    };
    let secs = now.duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// A cell's text, `-` when empty.
pub(crate) fn or_dash(text: impl Into<String>) -> String {
    let text = text.into();
    if text.is_empty() { "-".into() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_without_trailing_spaces() {
        let mut table = Table::new(&["NAME", "ENDPOINTS", "VERSION"]);
        table.push(vec!["users".into(), "2".into(), "7".into()]);
        table.push(vec!["a-much-longer-name".into(), "10".into(), "12".into()]);
        assert_eq!(
            table.render(),
            "NAME                ENDPOINTS  VERSION\n\
             users               2          7\n\
             a-much-longer-name  10         12\n"
        );
    }

    #[test]
    fn an_empty_last_column_leaves_no_trailing_space() {
        let mut table = Table::new(&["ID", "LAST ERROR"]);
        table.push(vec!["dp-1".into(), String::new()]);
        assert_eq!(table.render(), "ID    LAST ERROR\ndp-1\n");
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut table = Table::new(&["A", "B"]);
        table.push(vec!["é".into(), "x".into()]);
        assert_eq!(table.render(), "A  B\né  x\n");
    }

    #[test]
    fn formats_ages() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs_ago: i64| prost_types::Timestamp {
            seconds: 1_000_000 - secs_ago,
            nanos: 0,
        };
        assert_eq!(age(now, Some(&at(2))), "2s ago");
        assert_eq!(age(now, Some(&at(125))), "2m ago");
        assert_eq!(age(now, Some(&at(7300))), "2h ago");
        assert_eq!(age(now, Some(&at(3 * 86400))), "3d ago");
        assert_eq!(age(now, Some(&at(-5))), "0s ago");
        assert_eq!(age(now, None), "-");
    }
}
