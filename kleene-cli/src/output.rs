//! What klee prints: tables, ages, confirmations, and progress of base image creation.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use kleene_core::Event;

use crate::cli::Theme;

/// A table as klee draws it: a header, a rule, rows; columns three spaces apart.
pub fn table(theme: Theme, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from(" ");
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("   ");
            }
            s.push_str(cell);
            s.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        s.trim_end().to_string()
    };
    let total = 1 + widths.iter().sum::<usize>() + 3 * widths.len().saturating_sub(1) + 1;
    let rule = match theme {
        Theme::Fancy => '─',
        Theme::Simple => '-',
    };
    let mut out = line(&mut headers.iter().copied());
    out.push('\n');
    out.extend(std::iter::repeat_n(rule, total));
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

/// How long ago `then` (unix seconds) was, as Docker and klee say it: "3 minutes ago".
pub fn ago(then: i64, now: i64) -> String {
    let secs = (now - then).max(0) as u64;
    format!("{} ago", human_duration(Duration::from_secs(secs)))
}

/// Docker's (go-units) human duration.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// The current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Writes `warning` and a `[y/N]` prompt to `err` and reads the answer from `input`.
pub fn confirm(
    warning: &str,
    input: &mut dyn BufRead,
    err: &mut dyn Write,
) -> std::io::Result<bool> {
    writeln!(err, "WARNING! {warning}")?;
    write!(err, "Are you sure you want to continue? [y/N]: ")?;
    err.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    if !std::io::stdin().is_terminal() {
        // The answer was not echoed: end the prompt line.
        writeln!(err)?;
    }
    Ok(is_yes(&answer))
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Renders the events of an operation on stderr: progress bars when stderr is a terminal,
/// plain lines (at most one a second per phase) otherwise.
#[derive(Debug)]
pub struct Progress {
    state: Mutex<ProgressState>,
}

#[derive(Debug, Default)]
struct ProgressState {
    bars: bool,
    download: Option<ProgressBar>,
    extract: Option<ProgressBar>,
    last_line: Option<Instant>,
    download_seen: Option<(u64, Option<u64>, f64)>,
    download_done: bool,
    extract_seen: Option<(u64, u64)>,
    /// What was printed last as a plain line, per phase.
    download_printed: Option<u64>,
    extract_printed: Option<(u64, u64)>,
}

impl Progress {
    /// Bars when stderr is a terminal.
    pub fn new() -> Self {
        Self::with_bars(std::io::stderr().is_terminal())
    }

    pub fn with_bars(bars: bool) -> Self {
        Self {
            state: Mutex::new(ProgressState {
                bars,
                ..ProgressState::default()
            }),
        }
    }

    /// Shows one event.
    pub fn event(&self, event: Event) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Events of builds are rendered by `klee build`.
        match event {
            Event::Status(text) => s.println(&text),
            Event::Repaired(text) => s.println(&format!("repaired: {text}")),
            Event::ImageCreated { .. } => s.finish(),
            Event::Download { bytes, total, rate } => s.download(bytes, total, rate),
            Event::Extract { entries, bytes } => s.extract(entries, bytes),
            _ => {}
        }
    }

    /// Ends the bars and prints the last state of each phase.
    pub fn finish(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finish();
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

fn download_line(bytes: u64, total: Option<u64>, rate: f64) -> String {
    match total {
        Some(t) => format!(
            "downloaded {} of {} ({}/s)",
            HumanBytes(bytes),
            HumanBytes(t),
            HumanBytes(rate as u64)
        ),
        None => format!(
            "downloaded {} ({}/s)",
            HumanBytes(bytes),
            HumanBytes(rate as u64)
        ),
    }
}

fn extract_line(entries: u64, bytes: u64) -> String {
    format!("extracted {entries} files ({})", HumanBytes(bytes))
}

impl ProgressState {
    fn println(&mut self, text: &str) {
        match self.extract.as_ref().or(self.download.as_ref()) {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn due(&mut self) -> bool {
        let due = self
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            self.last_line = Some(Instant::now());
        }
        due
    }

    fn download(&mut self, bytes: u64, total: Option<u64>, rate: f64) {
        self.download_seen = Some((bytes, total, rate));
        if self.bars {
            let bar = self.download.get_or_insert_with(|| {
                let (bar, template) = match total {
                    Some(t) => (
                        ProgressBar::new(t),
                        "downloading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    ),
                    None => (
                        ProgressBar::new_spinner(),
                        "{spinner} downloading {bytes} {bytes_per_sec}",
                    ),
                };
                if let Ok(style) = ProgressStyle::with_template(template) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            bar.set_position(bytes);
        } else if self.due() {
            self.download_printed = Some(bytes);
            eprintln!("{}", download_line(bytes, total, rate));
        }
    }

    fn end_download(&mut self) {
        if self.download_done {
            return;
        }
        self.download_done = true;
        if let Some(bar) = self.download.take() {
            bar.finish();
        } else if let Some((b, t, r)) = self.download_seen {
            if self.download_printed != Some(b) {
                self.download_printed = Some(b);
                eprintln!("{}", download_line(b, t, r));
            }
        }
    }

    fn extract(&mut self, entries: u64, bytes: u64) {
        // Plain lines tell the download's end at the finish: its last events may come
        // after extraction began (the archive is extracted while it streams in).
        if self.bars {
            self.end_download();
        }
        self.extract_seen = Some((entries, bytes));
        if self.bars {
            let bar = self.extract.get_or_insert_with(|| {
                let bar = ProgressBar::new_spinner();
                if let Ok(style) = ProgressStyle::with_template("{spinner} extracting: {msg}") {
                    bar.set_style(style);
                }
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            bar.set_message(format!("{entries} files, {}", HumanBytes(bytes)));
        } else if self.due() {
            self.extract_printed = Some((entries, bytes));
            eprintln!("{}", extract_line(entries, bytes));
        }
    }

    fn finish(&mut self) {
        self.end_download();
        match self.extract.take() {
            Some(bar) => {
                if let Some((e, b)) = self.extract_seen {
                    bar.finish_with_message(format!("{e} files, {}", HumanBytes(b)));
                } else {
                    bar.finish();
                }
            }
            None => {
                if let Some((e, b)) = self.extract_seen.take() {
                    if self.extract_printed != Some((e, b)) {
                        self.extract_printed = Some((e, b));
                        eprintln!("{}", extract_line(e, b));
                    }
                }
            }
        }
        self.extract_seen = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tables_line_up_like_klee() {
        let t = table(
            Theme::Fancy,
            &["ID", "NAME", "TAG", "CREATED"],
            &[
                vec![
                    "707f754571dd".into(),
                    "hello-world".into(),
                    "latest".into(),
                    "4 hours ago".into(),
                ],
                vec![
                    "d67864280076".into(),
                    "nginx".into(),
                    "1.24.0_13".into(),
                    "4 hours ago".into(),
                ],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            " ID             NAME          TAG         CREATED"
        );
        assert!(lines[1].chars().all(|c| c == '─'));
        assert_eq!(
            lines[2],
            " 707f754571dd   hello-world   latest      4 hours ago"
        );
        assert_eq!(
            lines[3],
            " d67864280076   nginx         1.24.0_13   4 hours ago"
        );
        let simple = table(Theme::Simple, &["A"], &[]);
        assert_eq!(simple, " A\n---\n");
    }

    #[test]
    fn ages_read_like_docker() {
        let cases = [
            (0, "Less than a second ago"),
            (1, "1 second ago"),
            (59, "59 seconds ago"),
            (60, "About a minute ago"),
            (3 * 60 + 5, "3 minutes ago"),
            (3600, "About an hour ago"),
            (5 * 3600, "5 hours ago"),
            (3 * 86400, "3 days ago"),
            (20 * 86400, "2 weeks ago"),
            (90 * 86400, "3 months ago"),
            (800 * 86400, "2 years ago"),
        ];
        for (secs, want) in cases {
            assert_eq!(ago(1_000_000_000 - secs, 1_000_000_000), want, "{secs}s");
        }
        assert_eq!(ago(10, 5), "Less than a second ago");
    }

    #[test]
    fn only_yes_confirms() {
        for (answer, want) in [
            ("y\n", true),
            ("YES\n", true),
            ("n\n", false),
            ("\n", false),
            ("", false),
        ] {
            let mut input = std::io::Cursor::new(answer.as_bytes());
            let mut err = Vec::new();
            assert_eq!(
                confirm("test", &mut input, &mut err).unwrap(),
                want,
                "{answer:?}"
            );
            let err = String::from_utf8(err).unwrap();
            assert!(err.starts_with("WARNING! test\nAre you sure you want to continue? [y/N]: "));
        }
    }
}
