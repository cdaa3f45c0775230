//! Human tables or JSON.
//!
//! Table cells are made safe to print and to copy: ids are never shortened (an operator
//! copies them into the next command), only free text is, and only where the caller says
//! so ([`clip`]); control and invisible characters are escaped (`\u{202E}`), so a
//! right-to-left override or a zero-width space in stored data can neither reorder the
//! terminal's output nor hide in an id; columns are padded by display width, so CJK and
//! emoji cells stay aligned.

use serde::Serialize;
use unicode_width::UnicodeWidthStr;

/// Aligned columns for people.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    footer: Vec<String>,
}

impl Table {
    pub fn new<const N: usize>(header: [&str; N]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            footer: Vec::new(),
        }
    }

    /// Adds a row; every cell is escaped ([`escape`]) but never shortened.
    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows
            .push(cells.iter().map(|cell| escape(cell)).collect());
    }

    pub fn footer(&mut self, line: String) {
        self.footer.push(escape(&line));
    }

    /// The rows alone, aligned among themselves (for `history --follow`, which prints new
    /// messages under a header printed earlier).
    pub fn render_rows(&self) -> String {
        let mut text = String::new();
        let widths = self.widths();
        for row in &self.rows {
            text.push_str(&line(row, &widths));
            text.push('\n');
        }
        text
    }

    fn widths(&self) -> Vec<usize> {
        (0..self.header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|row| row[i].width())
                    .chain([self.header[i].width()])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut text = line(&self.header, &widths);
        text.push('\n');
        for row in &self.rows {
            text.push_str(&line(row, &widths));
            text.push('\n');
        }
        if self.rows.is_empty() {
            text.push_str("(none)\n");
        }
        for footer in &self.footer {
            text.push_str(footer);
            text.push('\n');
        }
        text
    }
}

/// One line of cells, each padded to its column's display width (`format!`'s `{:<w$}`
/// counts chars, which misaligns wide and zero-width characters).
fn line(cells: &[String], widths: &[usize]) -> String {
    let mut text = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            text.push_str("  ");
        }
        text.push_str(cell);
        text.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.width())));
    }
    text.trim_end().to_owned()
}

/// The longest free-text cell, in display columns.
const CLIP_WIDTH: usize = 80;

/// Shortens free text (message content, metadata, values) to [`CLIP_WIDTH`] display
/// columns after escaping, marking the cut with `...`. Never used on ids.
pub fn clip(text: &str) -> String {
    let escaped = escape(text);
    if escaped.width() <= CLIP_WIDTH {
        return escaped;
    }
    let mut cut = String::new();
    let mut width = 0;
    for c in escaped.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if width + w > CLIP_WIDTH - 3 {
            break;
        }
        width += w;
        cut.push(c);
    }
    cut.push_str("...");
    cut
}

/// Control characters as `\n`, `\t`, `\r` or `\u{..}`, and invisible or
/// direction-changing characters as `\u{..}`; everything else as is. Escaping an
/// already-escaped string changes nothing more, so cells can be escaped twice.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:X}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Characters that a terminal does not show as themselves, as inclusive ranges of code
/// points: C0/C1 controls, and the invisible format characters (Unicode `Cf`, line and
/// paragraph separators, fillers) that reorder text (bidi overrides and isolates), join or
/// hide it (zero-width space and joiners, word joiner, BOM), or are blank look-alikes.
/// Emoji variation selectors are left alone: they only pick a glyph.
///
/// One table for the tables of the CLI and the pages of `storectl ui`, which receives it
/// from `/api/info` and escapes with it in the browser.
pub const ESCAPED_RANGES: [(u32, u32); 17] = [
    (0x0000, 0x001F),   // C0 controls
    (0x007F, 0x009F),   // DEL, C1 controls
    (0x00AD, 0x00AD),   // soft hyphen
    (0x034F, 0x034F),   // combining grapheme joiner
    (0x061C, 0x061C),   // arabic letter mark
    (0x115F, 0x1160),   // hangul fillers
    (0x17B4, 0x17B5),   // khmer inherent vowels
    (0x180B, 0x180F),   // mongolian selectors, vowel separator
    (0x200B, 0x200F),   // zero-width space, (non-)joiners, LRM, RLM
    (0x2028, 0x202E),   // line/paragraph separators, bidi embeddings/overrides
    (0x2060, 0x206F),   // word joiner, invisible operators, bidi isolates
    (0x3164, 0x3164),   // hangul filler
    (0xFEFF, 0xFEFF),   // byte order mark, zero-width no-break space
    (0xFFA0, 0xFFA0),   // halfwidth hangul filler
    (0xFFF9, 0xFFFB),   // interlinear annotation
    (0x1D173, 0x1D17A), // musical formatting
    (0xE0000, 0xE007F), // tags
];

fn needs_escape(c: char) -> bool {
    let code = c as u32;
    ESCAPED_RANGES
        .iter()
        .any(|&(first, last)| (first..=last).contains(&code))
}

/// Where results go.
#[derive(Debug)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// Prints `value` as JSON, or `table` for people.
    pub fn emit<T: Serialize>(&self, value: &T, table: &Table) {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(text) => println!("{text}"),
                Err(err) => eprintln!("storectl: cannot encode the result: {err}"),
            }
        } else {
            print!("{}", table.render());
        }
    }

    /// A warning on stderr: a line for people, or one JSON object per line under `--json`
    /// (stderr stays machine-readable).
    pub fn warn(&self, kind: &str, message: &str, extra: serde_json::Value) {
        if self.json {
            let mut warning = serde_json::json!({"kind": kind, "message": message});
            if let (Some(target), serde_json::Value::Object(extra)) =
                (warning.as_object_mut(), extra)
            {
                target.extend(extra);
            }
            eprintln!("{}", serde_json::json!({ "warning": warning }));
        } else {
            eprintln!("storectl: warning: {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_escaped_once() {
        let text = "a\u{202E}b\u{200B}c\u{2028}d\u{FEFF}e\n";
        let escaped = escape(text);
        assert_eq!(escaped, "a\\u{202E}b\\u{200B}c\\u{2028}d\\u{FEFF}e\\n");
        assert_eq!(escape(&escaped), escaped);
    }

    #[test]
    fn every_control_character_is_in_the_table() {
        let controls = (0..=0x10FFFF_u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_control());
        for c in controls {
            assert!(needs_escape(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn wide_characters_align_and_ids_stay_whole() {
        let mut table = Table::new(["id", "x"]);
        let long = "i".repeat(200);
        table.row(["日本語".into(), "1".into()]);
        table.row(["abcdef".into(), "2".into()]);
        table.row([long.clone(), "3".into()]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1].width(), lines[2].width(), "{text}");
        assert!(text.contains(&long));
        assert_eq!(clip(&"x".repeat(100)).width(), CLIP_WIDTH);
    }
}
