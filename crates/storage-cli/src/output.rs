//! Human tables or JSON.

use serde::Serialize;

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

    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.into_iter().map(one_line).collect());
    }

    pub fn footer(&mut self, line: String) {
        self.footer.push(line);
    }

    fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|row| row[i].chars().count())
                    .chain([self.header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        let mut text = line(&self.header);
        text.push('\n');
        for row in &self.rows {
            text.push_str(&line(row));
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

/// Long or multi-line cells stay on one line.
fn one_line(cell: String) -> String {
    let flat: String = cell
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > 80 {
        let cut: String = flat.chars().take(77).collect();
        format!("{cut}...")
    } else {
        flat
    }
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
}
