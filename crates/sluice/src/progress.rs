//! Progress of a long command, on stderr: a bar when stderr is a terminal,
//! otherwise a plain line at most every few seconds and one at the end
//! (what a CI job's or cron's log keeps), and nothing with `--json`.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain line is written at most.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    what: &'static str,
    unit: &'static str,
    done: u64,
    total: u64,
    shown: Shown,
}

enum Shown {
    Bar(ProgressBar),
    Lines {
        out: Box<dyn Write + Send>,
        last: Option<Instant>,
    },
    Nothing,
}

impl Progress {
    /// `what` (a verb: "compacting") over `total` `unit`s; `quiet` with `--json`.
    pub fn new(what: &'static str, unit: &'static str, total: u64, quiet: bool) -> Progress {
        let shown = if quiet {
            Shown::Nothing
        } else if std::io::stderr().is_terminal() {
            let template = format!("{what} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}");
            let style = ProgressStyle::with_template(&template).expect("a valid template");
            Shown::Bar(ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(style))
        } else {
            Shown::Lines {
                out: Box::new(std::io::stderr()),
                last: None,
            }
        };
        Progress {
            what,
            unit,
            done: 0,
            total,
            shown,
        }
    }

    /// The same, writing plain lines to `out` (tests).
    #[cfg(test)]
    fn lines_to(what: &'static str, unit: &'static str, total: u64, out: Box<dyn Write + Send>) -> Progress {
        Progress {
            what,
            unit,
            done: 0,
            total,
            shown: Shown::Lines { out, last: None },
        }
    }

    /// The total became known or changed.
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
        if let Shown::Bar(bar) = &self.shown {
            bar.set_length(total);
        }
    }

    /// How many `unit`s are done.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// One more `unit` done; `item` names it.
    pub fn advance(&mut self, item: &str) {
        self.advance_by(1, item);
    }

    /// `n` more `unit`s done; `item` names the last.
    pub fn advance_by(&mut self, n: u64, item: &str) {
        self.done += n;
        let (done, total, what, unit) = (self.done, self.total, self.what, self.unit);
        match &mut self.shown {
            Shown::Bar(bar) => {
                bar.set_message(item.to_string());
                bar.inc(n);
            }
            Shown::Lines { out, last } => {
                if last.is_none_or(|at| at.elapsed() >= PLAIN_EVERY) || done >= total {
                    let _ = writeln!(out, "{what}: {done}/{total} {unit} ({item})");
                    *last = Some(Instant::now());
                }
            }
            Shown::Nothing => {}
        }
    }

    /// Done: the bar goes away (the command prints its summary).
    pub fn finish(self) {
        if let Shown::Bar(bar) = self.shown {
            bar.finish_and_clear();
        }
    }
}

/// A library call's `(done, total)` reports shown on `progress`, each
/// naming `item`.
pub fn reporter<'a>(progress: &'a std::sync::Mutex<Progress>, item: &'a str) -> impl Fn(u64, u64) + Send + Sync + 'a {
    move |done, total| {
        let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.set_total(total);
        let step = done.saturating_sub(progress.done());
        progress.advance_by(step, item);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_lines_say_the_first_step_and_the_last_not_every_one() {
        let out = Shared::default();
        let mut p = Progress::lines_to("compacting", "partitions", 4, Box::new(out.clone()));
        for partition in ["dt=1", "dt=2", "dt=3", "dt=4"] {
            p.advance(partition);
        }
        p.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "compacting: 1/4 partitions (dt=1)\ncompacting: 4/4 partitions (dt=4)\n"
        );
    }

    #[test]
    fn steps_of_many_units_count_them_all() {
        let out = Shared::default();
        let mut p = Progress::lines_to("snapshotting", "documents", 12_000, Box::new(out.clone()));
        p.advance_by(5_000, "orders");
        p.advance_by(5_000, "orders");
        assert_eq!(p.done(), 10_000);
        p.advance_by(2_000, "orders");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "snapshotting: 5000/12000 documents (orders)\nsnapshotting: 12000/12000 documents (orders)\n"
        );
    }
}
