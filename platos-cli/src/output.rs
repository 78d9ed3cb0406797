//! What `platos` prints: pretty JSON with `--json`, a table for lists and
//! the JSON otherwise; colour only on a terminal and never with `NO_COLOR`.

use std::io::IsTerminal;

use serde_json::Value;

/// Whether stderr (where colour and spinners go) may be decorated.
pub fn decorate_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether stdout may be decorated.
pub fn decorate_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` in bold when decorating.
pub fn bold(text: &str, on: bool) -> String {
    if on {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// `text` in red when decorating.
pub fn red(text: &str, on: bool) -> String {
    if on {
        format!("\x1b[31m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Writes `text` to stdout. A closed pipe (`platos … | head -1`) is not an
/// error worth a message, and never a panic as `print!` would make it.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The items of a list envelope: the first of `keys` holding a non-empty
/// array, else the first holding an array.
pub fn items<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a Vec<Value>> {
    let arrays = || keys.iter().filter_map(|k| value.get(*k)?.as_array());
    arrays().find(|a| !a.is_empty()).or_else(|| arrays().next())
}

/// At most this many columns: a table wider than a terminal helps nobody.
const MAX_COLUMNS: usize = 5;
/// Members shown first when a row has them: what tells rows apart.
const PREFERRED: &[&str] = &[
    "id",
    "key",
    "name",
    "title",
    "displayName",
    "status",
    "action",
    "role",
    "agentId",
    "createdAt",
];
/// Cells longer than this are cut.
const MAX_CELL: usize = 40;

/// A table of `rows`: the [`PREFERRED`] members the first row has, then
/// its other scalar members, one line per row; `(none)` for an empty list.
pub fn table(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    let mut columns: Vec<String> = Vec::new();
    for row in rows.iter().take(1) {
        if let Some(obj) = row.as_object() {
            for key in PREFERRED {
                if columns.len() < MAX_COLUMNS && obj.get(*key).is_some_and(is_scalar) {
                    columns.push((*key).to_owned());
                }
            }
            for (key, value) in obj {
                if columns.len() >= MAX_COLUMNS {
                    break;
                }
                if is_scalar(value) && !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
    }
    if columns.is_empty() {
        return rows.iter().map(|r| format!("{}\n", cell(r))).collect();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(&row[c.as_str()])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let mut out = String::new();
        for (i, v) in values.iter().enumerate() {
            if i + 1 == values.len() {
                out.push_str(v);
            } else {
                let pad = widths[i].saturating_sub(v.chars().count()) + 2;
                out.push_str(v);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(columns.iter().map(String::as_str).collect());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_CELL {
        let cut: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A spinner on a decorated stderr while a turn has sent nothing yet; a
/// no-op elsewhere (a pipe, a file, `NO_COLOR`).
pub struct Spinner {
    frame: usize,
    interval: Option<tokio::time::Interval>,
}

impl Spinner {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

    /// Spins when `decorated` (see [`decorate_stderr`]).
    pub fn start(decorated: bool) -> Spinner {
        Spinner {
            frame: 0,
            interval: decorated
                .then(|| tokio::time::interval(std::time::Duration::from_millis(80))),
        }
    }

    pub fn spinning(&self) -> bool {
        self.interval.is_some()
    }

    /// Waits for the next frame and draws it; never ready once stopped.
    pub async fn tick(&mut self) {
        let Some(interval) = &mut self.interval else {
            return std::future::pending().await;
        };
        interval.tick().await;
        let frame = Self::FRAMES[self.frame % Self::FRAMES.len()];
        self.frame += 1;
        eprint!("\r{frame}");
        let _ = std::io::Write::flush(&mut std::io::stderr());
    }

    /// Erases the spinner, once.
    pub fn stop(&mut self) {
        if self.interval.take().is_some() {
            eprint!("\r \r");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_puts_the_id_first_and_aligns_columns() {
        let rows = [
            json!({"title": "a", "id": "t1", "nested": {"x": 1}}),
            json!({"title": "longer", "id": "t22"}),
        ];
        assert_eq!(table(&rows), "id   title\nt1   a\nt22  longer\n");
        assert_eq!(table(&[]), "(none)\n");
    }

    #[test]
    fn items_prefer_the_first_non_empty_key() {
        let v = json!({"rows": [], "items": [1]});
        assert_eq!(items(&v, &["rows", "items"]).map(Vec::len), Some(1));
        assert_eq!(
            items(&json!({"rows": []}), &["rows"]).map(Vec::len),
            Some(0)
        );
        assert!(items(&json!({}), &["rows"]).is_none());
    }
}
