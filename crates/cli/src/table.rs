//! Tables for the terminal: column widths from the content (in terminal cells, so wide and
//! combining characters line up), sizes for people (`--bytes` for exact ones), and times in
//! the local zone with its name (`--utc` for UTC).

use unicode_width::UnicodeWidthStr;

/// How a column's cells sit in its width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table: a header row, then rows of as many cells.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
    indent: usize,
}

impl Table {
    /// A table with these column headers.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|(name, align)| ((*name).to_owned(), *align))
                .collect(),
            rows: Vec::new(),
            indent: 0,
        }
    }

    /// Every line starts with `spaces` spaces.
    pub fn indented(mut self, spaces: usize) -> Self {
        self.indent = spaces;
        self
    }

    /// Adds a row; missing cells are empty, extra ones are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.iter().map(|cell| printable(cell)).collect();
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as lines, each ending in a newline and none in trailing spaces.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|row| row[i].width())
                    .chain([self.columns[i].0.width()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.columns.iter().map(|(name, _)| name.clone()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = " ".repeat(self.indent);
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - cell.width());
                match self.columns[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` with control characters escaped, so that a name cannot break a line or move the
/// cursor.
fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// How sizes and times are shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Units {
    /// Sizes as exact byte counts.
    pub bytes: bool,
    /// Times in UTC rather than the local zone.
    pub utc: bool,
}

impl Units {
    /// A size: `1.5 MiB`, or `1572864` with `--bytes`.
    pub fn size(&self, bytes: u64) -> String {
        if self.bytes {
            bytes.to_string()
        } else {
            redcloud_controller::status::human_bytes(bytes)
        }
    }

    /// A time from the server (UTC ISO-8601 without an offset, as the API writes them, or
    /// with one) as `2026-11-28 14:03:07 CET` in the local zone (or UTC); what cannot be read
    /// is shown as it came.
    pub fn time(&self, iso8601: &str) -> String {
        let at = iso8601.parse::<jiff::Timestamp>().or_else(|_| {
            iso8601
                .parse::<jiff::civil::DateTime>()
                .and_then(|utc| utc.to_zoned(jiff::tz::TimeZone::UTC))
                .map(|zoned| zoned.timestamp())
        });
        let Ok(at) = at else {
            return iso8601.to_owned();
        };
        let zone = if self.utc {
            jiff::tz::TimeZone::UTC
        } else {
            jiff::tz::TimeZone::system()
        };
        let zoned = at.to_zoned(zone);
        // A zone without an abbreviation (as some are) shows its offset instead.
        let name = zoned.strftime("%Z").to_string();
        let name = if name.is_empty() {
            zoned.strftime("%:z").to_string()
        } else {
            name
        };
        format!("{} {name}", zoned.strftime("%Y-%m-%d %H:%M:%S"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(names: &[&str]) -> String {
        let mut table = Table::new(&[
            ("NAME", Align::Left),
            ("SIZE", Align::Right),
            ("TAGS", Align::Left),
        ]);
        for name in names {
            table.row(vec![
                (*name).to_owned(),
                "1.0 KiB".to_owned(),
                "a,b".to_owned(),
            ]);
        }
        table.render()
    }

    /// The terminal column at which `needle` starts on `line`.
    fn column_of(line: &str, needle: &str) -> usize {
        line[..line.find(needle).unwrap()].width()
    }

    #[test]
    fn columns_line_up_in_terminal_cells_with_long_and_unicode_names() {
        let long = "a-rather-long-file-name-that-sets-the-width.tar.gz";
        let names = [
            "é.txt",
            "日本語のファイル.pdf",
            "🦀 crab.rs",
            "e\u{301}.txt",
            long,
        ];
        let out = listing(&names);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), names.len() + 1);
        let tags_at = column_of(lines[0], "TAGS");
        assert_eq!(tags_at, long.width() + 2 + "1.0 KiB".len() + 2);
        for line in &lines[1..] {
            assert_eq!(column_of(line, "a,b"), tags_at, "{line:?} in\n{out}");
            // Sizes are right-aligned: they end where the header ends.
            assert_eq!(
                column_of(line, "KiB") + 3,
                column_of(lines[0], "SIZE") + 4,
                "{out}"
            );
        }
        assert!(out.lines().all(|line| !line.ends_with(' ')));
    }

    #[test]
    fn control_characters_in_a_name_cannot_break_the_table() {
        let out = listing(&["two\nlines\t.txt", "\u{1b}[2Jclear"]);
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out.contains("two\\nlines\\t.txt"), "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
    }

    #[test]
    fn sizes_are_for_people_unless_asked_for_bytes() {
        let people = Units::default();
        assert_eq!(people.size(512), "512 B");
        assert_eq!(people.size(1_572_864), "1.5 MiB");
        let exact = Units {
            bytes: true,
            ..Units::default()
        };
        assert_eq!(exact.size(1_572_864), "1572864");
    }

    #[test]
    fn times_name_their_zone() {
        let utc = Units {
            utc: true,
            ..Units::default()
        };
        assert_eq!(
            utc.time("2026-11-28T13:03:07.250Z"),
            "2026-11-28 13:03:07 UTC"
        );
        assert_eq!(
            utc.time("2026-11-28T13:03:07.873069"),
            "2026-11-28 13:03:07 UTC",
            "the API's own form: UTC without an offset"
        );
        assert_eq!(utc.time("not a time"), "not a time");
        let local = Units::default().time("2026-11-28T13:03:07Z");
        let zone = local.rsplit(' ').next().unwrap();
        assert!(
            !zone.is_empty() && local.starts_with("2026-11-2"),
            "{local}"
        );
    }
}
