//! The status report as a screen of text: a header and verdict line, then
//! one table per stage. `-` marks what is not known (not running, or not
//! exported for that component).

use std::fmt::Write as _;

use super::report::Report;

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let state = match &r.api {
        Some(api) => format!("running (API {api})"),
        None => "not running".to_string(),
    };
    let _ = writeln!(out, "{} ({}): {state}", r.pipeline, r.file);
    if r.verdict.healthy {
        let _ = writeln!(out, "verdict: healthy");
    } else {
        let _ = writeln!(out, "verdict: degraded: {}", r.verdict.reasons.join("; "));
    }

    let mut sources = Table::new(&[
        "SOURCES",
        "events",
        "/s",
        "last input",
        "errors",
        "waits",
        "upstream",
        "lease",
    ]);
    for s in &r.sources {
        sources.row(vec![
            s.name.clone(),
            count(s.events),
            rate(s.events_per_sec),
            secs(s.last_input_secs_ago),
            count(s.errors),
            count(s.backpressure_waits),
            up(s.upstream_up),
            s.lease_held
                .map_or("-".into(), |h| if h { "held" } else { "standby" }.into()),
        ]);
    }
    out.push('\n');
    out.push_str(&sources.render());

    let q = &r.queue;
    let _ = writeln!(
        out,
        "\nQUEUE  {} batches, {}, {} in flight, oldest {}, {} acked, {} redelivered",
        count(q.batches),
        bytes(q.bytes),
        count(q.in_flight),
        secs(q.oldest_age_secs),
        count(q.acked),
        count(q.redelivered)
    );

    if !r.transforms.is_empty() {
        let mut transforms = Table::new(&["TRANSFORMS", "in", "out", "dropped", "dead letters"]);
        for t in &r.transforms {
            transforms.row(vec![
                t.name.clone(),
                count(t.events_in),
                count(t.events_out),
                count(t.dropped),
                count(t.dead_letters),
            ]);
        }
        out.push('\n');
        out.push_str(&transforms.render());
    }

    let mut sinks = Table::new(&[
        "SINKS",
        "rows",
        "/s",
        "commits",
        "last commit",
        "flush p99",
        "backend",
        "version",
    ]);
    for s in &r.sinks {
        sinks.row(vec![
            s.name.clone(),
            count(s.rows),
            rate(s.rows_per_sec),
            count(s.commits),
            secs(s.last_commit_secs_ago),
            secs(s.flush_p99_secs),
            up(s.backend_up),
            s.table_version.map_or("-".into(), |v| v.to_string()),
        ]);
    }
    out.push('\n');
    out.push_str(&sinks.render());

    let _ = writeln!(out, "\nDEAD LETTERS  {} held", count(r.dead_letters.total));
    let mut reasons = Table::new(&["", "count", "reason", "newest"]).left(2);
    for d in &r.dead_letters.by_reason {
        reasons.row(vec![
            String::new(),
            count(Some(d.count)),
            d.reason.clone(),
            d.newest.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    if !r.dead_letters.by_reason.is_empty() {
        out.push_str(&reasons.render_body());
    }
    out
}

/// Columns sized to their widest cell; the first left-aligned and its
/// rows indented, the others right-aligned unless made `left`.
struct Table {
    head: Vec<String>,
    left: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|h| h.to_string()).collect(),
            left: (0..head.len()).map(|i| i == 0).collect(),
            rows: Vec::new(),
        }
    }

    /// Column `i` reads left to right (text, not numbers).
    fn left(mut self, i: usize) -> Table {
        self.left[i] = true;
        self
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        (0..self.head.len())
            .map(|i| {
                let cells = self.rows.iter().map(|r| r[i].chars().count() + usize::from(i == 0) * 2);
                cells.chain([self.head[i].chars().count()]).max().unwrap_or(0)
            })
            .collect()
    }

    fn line(&self, cells: &[String], widths: &[usize], indent: &str) -> String {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            match (i, self.left[i]) {
                (0, _) => {
                    let _ = write!(line, "{indent}{cell:<w$}", w = width - indent.len());
                }
                (_, true) => {
                    let _ = write!(line, "  {cell:<width$}");
                }
                (_, false) => {
                    let _ = write!(line, "  {cell:>width$}");
                }
            }
        }
        line.trim_end().to_string() + "\n"
    }

    fn render(&self) -> String {
        let widths = self.widths();
        let mut out = self.line(&self.head, &widths, "");
        for row in &self.rows {
            out.push_str(&self.line(row, &widths, "  "));
        }
        out
    }

    /// The rows without the head line.
    fn render_body(&self) -> String {
        let widths = self.widths();
        self.rows.iter().map(|row| self.line(row, &widths, "  ")).collect()
    }
}

fn count(n: Option<u64>) -> String {
    let Some(n) = n else { return "-".into() };
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn rate(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| {
        if r >= 10.0 {
            count(Some(r.round() as u64))
        } else {
            format!("{r:.1}")
        }
    })
}

fn secs(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) if s < 10.0 => format!("{s:.1} s"),
        Some(s) if s < 3600.0 => format!("{s:.0} s"),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

fn bytes(b: Option<u64>) -> String {
    match b {
        None => "- bytes".into(),
        Some(b) if b < 1024 => format!("{b} B"),
        Some(b) if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

fn up(flag: Option<bool>) -> String {
    flag.map_or("-".into(), |u| if u { "up" } else { "DOWN" }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(count(Some(1_234_567)), "1 234 567");
        assert_eq!(count(Some(999)), "999");
        assert_eq!(count(None), "-");
        assert_eq!(rate(Some(1234.4)), "1 234");
        assert_eq!(rate(Some(0.25)), "0.2");
        assert_eq!(secs(Some(0.042)), "42 ms");
        assert_eq!(secs(Some(4.25)), "4.2 s");
        assert_eq!(secs(Some(7260.0)), "2.0 h");
        assert_eq!(bytes(Some(3 * 1024 * 1024 / 2)), "1.5 MiB");
    }

    #[test]
    fn columns_line_up_under_their_heads() {
        let mut t = Table::new(&["SINKS", "rows"]);
        t.row(vec!["lake".into(), "12 000".into()]);
        t.row(vec!["warehouse".into(), "7".into()]);
        assert_eq!(
            t.render(),
            "SINKS          rows\n  lake       12 000\n  warehouse       7\n"
        );
    }
}
