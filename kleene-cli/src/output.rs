//! What klee prints: tables, ages, confirmations, kleened's JSON shapes, and the progress
//! of base image creation. Everything goes to stdout, as klee prints it; errors go to
//! stderr.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kleene_api::transcript::{human_bytes, CreateLines};
use kleene_api::{ContainerSummary, Image, Network, Volume};
use kleene_core::Event;
use serde::Serialize;

use crate::cli::Theme;

// ---- tables ----

/// A column of a table, as klee declares them for rich: a header, an optional minimum
/// and maximum width (longer cells end in `…`), and its justification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub header: &'static str,
    pub min_width: usize,
    pub max_width: Option<usize>,
    pub centred: bool,
}

impl Column {
    /// A left-justified column as wide as its widest cell.
    pub const fn new(header: &'static str) -> Self {
        Self {
            header,
            min_width: 0,
            max_width: None,
            centred: false,
        }
    }

    /// At least `w` wide.
    pub const fn min_width(mut self, w: usize) -> Self {
        self.min_width = w;
        self
    }

    /// At most `w` wide: longer cells are cut and end in `…`.
    pub const fn max_width(mut self, w: usize) -> Self {
        self.max_width = Some(w);
        self
    }

    /// Cells centred (extra space on the right when it does not split evenly).
    pub const fn centred(mut self) -> Self {
        self.centred = true;
        self
    }
}

/// `lsi`'s columns.
pub const IMAGE_COLUMNS: [Column; 4] = [
    Column::new("ID"),
    Column::new("NAME"),
    Column::new("TAG"),
    Column::new("CREATED"),
];

/// `lsc`'s columns, with klee's widths: the id at least 13 wide, the command at most
/// 40, AUTORUN centred.
pub const CONTAINER_COLUMNS: [Column; 8] = [
    Column::new("CONTAINER ID").min_width(13),
    Column::new("NAME"),
    Column::new("IMAGE"),
    Column::new("COMMAND").max_width(40),
    Column::new("CREATED"),
    Column::new("AUTORUN").centred(),
    Column::new("STATUS"),
    Column::new("JID"),
];

/// `lsv`'s columns.
pub const VOLUME_COLUMNS: [Column; 2] = [Column::new("VOLUME NAME"), Column::new("CREATED")];

/// `lsn`'s columns.
pub const NETWORK_COLUMNS: [Column; 4] = [
    Column::new("ID"),
    Column::new("NAME"),
    Column::new("TYPE"),
    Column::new("SUBNET"),
];

fn width_of(s: &str) -> usize {
    s.chars().count()
}

/// `text` fitted into `width`: padded (left-justified or centred), or cut to end in `…`.
fn fit(text: &str, width: usize, centred: bool) -> String {
    let len = width_of(text);
    if len > width {
        if width == 0 {
            return String::new();
        }
        let mut cut: String = text.chars().take(width - 1).collect();
        cut.push('…');
        return cut;
    }
    let extra = width - len;
    let left = if centred { extra / 2 } else { 0 };
    let mut out = String::with_capacity(text.len() + extra);
    out.extend(std::iter::repeat_n(' ', left));
    out.push_str(text);
    out.extend(std::iter::repeat_n(' ', extra - left));
    out
}

/// A table as klee draws it with rich (`show_edge=False`): every cell padded by a space
/// on each side, cells one column apart (`|` with the simple theme), the header, a rule
/// (`─`; `-` and `+` with the simple theme), the rows. Lines keep their trailing padding,
/// as rich prints them.
pub fn table(theme: Theme, columns: &[Column], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let natural = rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|cell| width_of(cell))
                .fold(width_of(c.header), usize::max);
            let w = natural.max(c.min_width);
            c.max_width.map_or(w, |m| w.min(m))
        })
        .collect();
    let separator = match theme {
        Theme::Fancy => " ",
        Theme::Simple => "|",
    };
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = columns
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {} ", fit(cells.next().unwrap_or(""), *w, c.centred)))
            .collect();
        parts.join(separator)
    };
    let rule = match theme {
        Theme::Fancy => {
            let total =
                widths.iter().map(|w| w + 2).sum::<usize>() + widths.len().saturating_sub(1);
            "─".repeat(total)
        }
        Theme::Simple => widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+"),
    };
    let mut out = line(&mut columns.iter().map(|c| c.header));
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

/// klee's STATUS of a container: `running` or `stopped`.
pub fn status(running: bool) -> &'static str {
    if running {
        "running"
    } else {
        "stopped"
    }
}

/// A row of `lsc`: the image is its `name:tag`, or the container's image id when it has
/// no name (or is gone).
pub fn container_row(c: &ContainerSummary, now: i64) -> Vec<String> {
    let image = if c.image_name.is_empty() {
        c.container.image_id.clone()
    } else {
        format!("{}:{}", c.image_name, c.image_tag)
    };
    vec![
        c.container.id.clone(),
        c.container.name.clone(),
        image,
        c.container.cmd.join(" "),
        ago_iso(&c.container.created, now),
        // As klee: "yes" for the on-startup restart policy.
        if c.container.restart_policy == "on-startup" {
            "yes".into()
        } else {
            "no".into()
        },
        status(c.container.running).into(),
        c.jid.map(|j| j.to_string()).unwrap_or_default(),
    ]
}

/// A row of `lsi`.
pub fn image_row(i: &Image, now: i64) -> Vec<String> {
    vec![
        i.id.clone(),
        i.name.clone(),
        i.tag.clone(),
        ago_iso(&i.created, now),
    ]
}

/// A row of `lsv`.
pub fn volume_row(v: &Volume, now: i64) -> Vec<String> {
    vec![v.name.clone(), ago_iso(&v.created, now)]
}

/// A row of `lsn`: klee shows the IPv4 subnet only (empty when there is none).
pub fn network_row(n: &Network) -> Vec<String> {
    vec![
        n.id.clone(),
        n.name.clone(),
        n.kind.clone(),
        n.subnet.clone(),
    ]
}

// ---- times ----

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

/// How long ago a time kleened wrote was (an unreadable one as now).
pub fn ago_iso(then: &str, now: i64) -> String {
    ago(kleene_api::views::parse_iso8601(then).unwrap_or(now), now)
}

/// The current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---- JSON ----

/// `value` as klee prints JSON: indented by two spaces (rich's `print_json`), and with
/// the simple theme (`json.dumps(indent=2)`) every character beyond ASCII escaped.
pub fn json_text(theme: Theme, value: &impl Serialize) -> serde_json::Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    Ok(match theme {
        Theme::Fancy => text,
        // Characters beyond ASCII only occur inside strings: escaping them there is what
        // Python's ensure_ascii does.
        Theme::Simple => {
            let mut out = String::with_capacity(text.len());
            for c in text.chars() {
                if c.is_ascii() {
                    out.push(c);
                } else {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
            out
        }
    })
}

// ---- prompts ----

/// klee's prune prompt (click's `confirm`): prints `warning` and
/// `Are you sure you want to continue? [y/N]: ` to `out` and reads the answer from
/// `input`; `y`/`yes` confirm, `n`/`no`, an empty answer and the end of the input refuse,
/// anything else prints `Error: invalid input` and asks again.
pub fn confirm(
    warning: &str,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    writeln!(out, "{warning}")?;
    loop {
        write!(out, "Are you sure you want to continue? [y/N]: ")?;
        out.flush()?;
        let mut answer = String::new();
        if input.read_line(&mut answer)? == 0 {
            return Ok(false);
        }
        match answer.trim().to_lowercase().as_str() {
            "y" | "yes" => return Ok(true),
            "n" | "no" | "" => return Ok(false),
            _ => writeln!(out, "Error: invalid input")?,
        }
    }
}

/// What a prune prints: the removed ids one a line (klee prints the joined list, so an
/// empty line when nothing was removed).
pub fn id_list(ids: &[String]) -> String {
    format!("{}\n", ids.join("\n"))
}

// ---- image creation ----

pub use kleene_api::transcript::{EXTRACTED, FETCHED};

/// Renders the events of a base image creation on stdout: progress bars when stdout is a
/// terminal, otherwise kleened's plain lines ([`CreateLines`], what `klee --host` prints
/// from kleened's frames too).
#[derive(Debug)]
pub struct Progress {
    state: Mutex<ProgressState>,
}

/// Where plain lines go.
type Sink = Box<dyn Write + Send>;

enum ProgressState {
    Plain { lines: CreateLines, out: Sink },
    Bars(Bars),
}

impl std::fmt::Debug for ProgressState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProgressState::Plain { lines, .. } => f.debug_tuple("Plain").field(lines).finish(),
            ProgressState::Bars(b) => f
                .debug_struct("Bars")
                .field("fetched", &b.fetched)
                .field("created", &b.created)
                .finish_non_exhaustive(),
        }
    }
}

/// The bars of a terminal, and kleened's lines printed above them.
#[derive(Default)]
struct Bars {
    download: Option<ProgressBar>,
    extract: Option<ProgressBar>,
    download_seen: bool,
    /// The download's bar was ended.
    download_closed: bool,
    /// `FETCHED` was printed.
    fetched: bool,
    extract_seen: Option<(u64, u64)>,
    created: bool,
}

impl Progress {
    /// Bars when stdout is a terminal.
    pub fn new() -> Self {
        Self::with(std::io::stdout().is_terminal(), Box::new(std::io::stdout()))
    }

    /// Plain lines (bars when `bars`) written to `out`.
    pub fn with(bars: bool, out: Sink) -> Self {
        let state = if bars {
            ProgressState::Bars(Bars::default())
        } else {
            ProgressState::Plain {
                lines: CreateLines::default(),
                out,
            }
        };
        Self {
            state: Mutex::new(state),
        }
    }

    /// Shows one event.
    pub fn event(&self, event: Event) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *s {
            ProgressState::Plain { lines, out } => {
                for line in lines.event(&event) {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            // Events of builds are rendered by `klee build`.
            ProgressState::Bars(b) => match event {
                Event::Status(text) => b.println(&text),
                Event::Repaired(text) => b.println(&format!("repaired: {text}")),
                Event::ImageCreated { .. } => b.created(),
                Event::Download { bytes, total, .. } => b.download(bytes, total),
                Event::Extract { entries, bytes } => b.extract(entries, bytes),
                _ => {}
            },
        }
    }

    /// Ends the bars, or prints the last state of each phase (after a failure too).
    pub fn finish(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *s {
            ProgressState::Plain { lines, out } => {
                for line in lines.finish() {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            ProgressState::Bars(b) => b.finish(),
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    fn println(&self, text: &str) {
        match self.extract.as_ref().or(self.download.as_ref()) {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    fn download(&mut self, bytes: u64, total: Option<u64>) {
        if self.download_closed {
            return;
        }
        self.download_seen = true;
        let bar = self.download.get_or_insert_with(|| {
            let (bar, template) = match total {
                Some(t) => (
                    ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stdout()),
                    "downloading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                ),
                None => (
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout()),
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
        if total == Some(bytes) {
            self.close_download();
            self.announce_fetched();
        }
    }

    /// The download's bar ends.
    fn close_download(&mut self) {
        if self.download_closed {
            return;
        }
        self.download_closed = true;
        if let Some(bar) = self.download.take() {
            bar.finish();
        }
    }

    /// kleened's `FETCHED` lines, once, after a download.
    fn announce_fetched(&mut self) {
        if self.fetched || !self.download_seen {
            return;
        }
        self.fetched = true;
        self.println(FETCHED);
    }

    fn extract(&mut self, entries: u64, bytes: u64) {
        self.extract_seen = Some((entries, bytes));
        // The archive is extracted while it streams in: the download is told over once
        // extraction shows.
        self.close_download();
        self.announce_fetched();
        let bar = self.extract.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            if let Ok(style) = ProgressStyle::with_template("{spinner} extracting: {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_message(format!("{entries} files, {}", human_bytes(bytes)));
    }

    /// The extraction's spinner ends.
    fn close_extract(&mut self) {
        match (self.extract.take(), self.extract_seen) {
            (Some(bar), Some((e, b))) => {
                bar.finish_with_message(format!("{e} files, {}", human_bytes(b)));
            }
            (Some(bar), None) => bar.finish(),
            (None, _) => {}
        }
    }

    /// The image was created: the phases' last states and kleened's lines.
    fn created(&mut self) {
        if self.created {
            return;
        }
        self.created = true;
        self.close_download();
        self.announce_fetched();
        self.close_extract();
        if self.extract_seen.is_some() {
            self.println(EXTRACTED);
        }
    }

    fn finish(&mut self) {
        self.close_download();
        self.close_extract();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    fn rows(cells: &[&[&str]]) -> Vec<Vec<String>> {
        cells
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    // Golden strings: rich 13.9's output of klee's tables (rich.Table(show_edge=False,
    // box=SIMPLE), ASCII for the simple theme), trailing padding included.
    #[test]
    fn image_tables_are_richs() {
        let r = rows(&[
            &["707f754571dd", "hello-world", "latest", "4 hours ago"],
            &["d67864280076", "nginx", "1.24.0_13", "4 hours ago"],
        ]);
        assert_eq!(
            table(Theme::Fancy, &IMAGE_COLUMNS, &r),
            format!(
                " ID             NAME          TAG         CREATED     \n{}\n \
                 707f754571dd   hello-world   latest      4 hours ago \n \
                 d67864280076   nginx         1.24.0_13   4 hours ago \n",
                "─".repeat(54)
            )
        );
        assert_eq!(
            table(Theme::Simple, &IMAGE_COLUMNS, &r),
            " ID           | NAME        | TAG       | CREATED     \n\
             --------------+-------------+-----------+-------------\n \
             707f754571dd | hello-world | latest    | 4 hours ago \n \
             d67864280076 | nginx       | 1.24.0_13 | 4 hours ago \n"
        );
        assert_eq!(
            table(Theme::Fancy, &IMAGE_COLUMNS, &[]),
            format!(" ID   NAME   TAG   CREATED \n{}\n", "─".repeat(27))
        );
        assert_eq!(
            table(Theme::Simple, &IMAGE_COLUMNS, &[]),
            " ID | NAME | TAG | CREATED \n----+------+-----+---------\n"
        );
    }

    #[test]
    fn container_tables_are_richs() {
        let long = format!("/bin/echo {}", "a".repeat(60));
        let r = rows(&[
            &[
                "3b4c0d4d2b1e",
                "quirky_heisenberg",
                "FreeBSD:13.2-RELEASE",
                "/bin/sh /etc/rc",
                "2 minutes ago",
                "no",
                "running",
                "12",
            ],
            &[
                "aaaaaaaaaaaa",
                "x",
                "bb:latest",
                &long,
                "2 minutes ago",
                "yes",
                "stopped",
                "",
            ],
        ]);
        assert_eq!(
            table(Theme::Fancy, &CONTAINER_COLUMNS, &r),
            format!(
                " CONTAINER ID    NAME                IMAGE                  COMMAND                                    CREATED         AUTORUN   STATUS    JID \n\
                 {}\n \
                 3b4c0d4d2b1e    quirky_heisenberg   FreeBSD:13.2-RELEASE   /bin/sh /etc/rc                            2 minutes ago     no      running   12  \n \
                 aaaaaaaaaaaa    x                   bb:latest              /bin/echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaa…   2 minutes ago     yes     stopped       \n",
                "─".repeat(143)
            )
        );
        assert_eq!(
            table(Theme::Simple, &CONTAINER_COLUMNS, &r[..1]),
            " CONTAINER ID  | NAME              | IMAGE                | COMMAND         | CREATED       | AUTORUN | STATUS  | JID \n\
             ---------------+-------------------+----------------------+-----------------+---------------+---------+---------+-----\n \
             3b4c0d4d2b1e  | quirky_heisenberg | FreeBSD:13.2-RELEASE | /bin/sh /etc/rc | 2 minutes ago |   no    | running | 12  \n"
        );
    }

    #[test]
    fn volume_and_network_tables_are_richs() {
        assert_eq!(
            table(
                Theme::Fancy,
                &VOLUME_COLUMNS,
                &rows(&[&["my-vol", "5 seconds ago"]])
            ),
            format!(
                " VOLUME NAME   CREATED       \n{}\n my-vol        5 seconds ago \n",
                "─".repeat(29)
            )
        );
        assert_eq!(
            table(
                Theme::Fancy,
                &NETWORK_COLUMNS,
                &rows(&[&["6b933304be4a", "testnet", "loopback", "10.2.3.0/24"]])
            ),
            format!(
                " ID             NAME      TYPE       SUBNET      \n{}\n \
                 6b933304be4a   testnet   loopback   10.2.3.0/24 \n",
                "─".repeat(49)
            )
        );
    }

    #[test]
    fn cells_are_cut_and_centred_like_rich() {
        assert_eq!(fit("abcdef", 4, false), "abc…");
        assert_eq!(fit("no", 7, true), "  no   ");
        assert_eq!(fit("yes", 7, true), "  yes  ");
        assert_eq!(fit("x", 3, false), "x  ");
        assert_eq!(fit("x", 0, false), "");
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
    fn times_read_like_kleened() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso8601(1_708_937_533), "2024-02-26T08:52:13.000000Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000000Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.000000Z");
        assert_eq!(iso8601(4_102_444_799), "2099-12-31T23:59:59.000000Z");
    }

    fn prompt(answer: &str) -> (bool, String) {
        let mut input = std::io::Cursor::new(answer.as_bytes());
        let mut out = Vec::new();
        let yes = confirm(
            "WARNING! This will remove all unused volumes.",
            &mut input,
            &mut out,
        )
        .unwrap();
        (yes, String::from_utf8(out).unwrap())
    }

    #[test]
    fn prompts_are_clicks() {
        const ASK: &str = "Are you sure you want to continue? [y/N]: ";
        let warned = |rest: &str| format!("WARNING! This will remove all unused volumes.\n{rest}");
        for (answer, want) in [
            ("y\n", true),
            ("YES\n", true),
            (" yes \n", true),
            ("n\n", false),
            ("no\n", false),
            ("\n", false),
            ("", false),
        ] {
            assert_eq!(prompt(answer), (want, warned(ASK)), "{answer:?}");
        }
        // Anything else is asked again, as click does.
        assert_eq!(
            prompt("maybe\ny\n"),
            (true, warned(&format!("{ASK}Error: invalid input\n{ASK}")))
        );
        assert_eq!(
            prompt("maybe\n"),
            (false, warned(&format!("{ASK}Error: invalid input\n{ASK}")))
        );
    }

    #[test]
    fn pruned_ids_are_klees_list() {
        assert_eq!(id_list(&[]), "\n");
        assert_eq!(id_list(&["a".into(), "b".into()]), "a\nb\n");
    }

    #[test]
    fn simple_json_is_ascii_like_pythons() {
        let v = serde_json::json!({"b": "é😀", "a": [], "c": {}});
        assert_eq!(
            json_text(Theme::Simple, &v).unwrap(),
            "{\n  \"a\": [],\n  \"b\": \"\\u00e9\\ud83d\\ude00\",\n  \"c\": {}\n}"
        );
        assert_eq!(
            json_text(Theme::Fancy, &v).unwrap(),
            "{\n  \"a\": [],\n  \"b\": \"é😀\",\n  \"c\": {}\n}"
        );
    }

    /// A sink tests can read.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn plain_progress_is_kleeneds_lines() {
        let buf = Buf::default();
        let p = Progress::with(false, Box::new(buf.clone()));
        p.event(Event::Status("fetching file:///x.txz".into()));
        p.event(Event::Download {
            bytes: 10,
            total: Some(20),
            rate: 0.0,
        });
        p.finish();
        assert_eq!(
            buf.text(),
            "fetching file:///x.txz\ndownloaded 10 B of 20 B (0 B/s)\n"
        );
    }

    // ---- kleened's shapes ----

    use kleene_api::views::{
        container_inspect, container_summary, image_view, iso8601, network_inspect, network_view,
        volume_inspect,
    };
    use kleene_core::kleene_zfs::{DatasetName, SnapshotName};
    use kleene_core::{
        Container, ContainerConfig, Driver, Endpoint, Id, Image, ImageConfig, Instruction,
        MountSpec, Network, NetworkSpec, NetworkType, PortRange, Protocol, PublishedPort, RunState,
        Runtime, Volume,
    };

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    fn endpoint(container: &str, ip: &str) -> Endpoint {
        Endpoint {
            container: id(container),
            network: id("6b933304be4a"),
            network_name: "testnet".into(),
            ipv4: Some(ip.parse().unwrap()),
            ipv6: None,
            slot: 0,
        }
    }

    fn container() -> Container {
        Container {
            id: id("f455de07ac84"),
            name: "hungry_knuth".into(),
            image_id: id("11370bfb4a88"),
            snapshot: SnapshotName::new("zroot/kleene/image/11370bfb4a88@image").unwrap(),
            dataset: DatasetName::new("zroot/kleene/container/f455de07ac84").unwrap(),
            config: ContainerConfig {
                cmd: vec!["host".into(), "freebsd.org".into()],
                mounts: vec![
                    MountSpec::parse("myvol2:/app").unwrap(),
                    MountSpec::parse("/srv/data:/data:ro").unwrap(),
                ],
                network: Driver::Ipnet,
                publish: vec![PublishedPort::new(
                    None,
                    PortRange::single(8080).unwrap(),
                    PortRange::single(80).unwrap(),
                    Protocol::Tcp,
                )
                .unwrap()],
                jail_params: vec!["mount.devfs".parse().unwrap()],
                ..ContainerConfig::default()
            },
            created: 1_708_937_533,
            runtime: Runtime::default(),
        }
    }

    #[test]
    fn container_inspect_is_kleeneds() {
        let c = container();
        let text = json_text(
            Theme::Fancy,
            &container_inspect(&c, &[endpoint("f455de07ac84", "10.2.3.2")]),
        )
        .unwrap();
        assert_eq!(
            text,
            r#"{
  "container": {
    "cmd": [
      "host",
      "freebsd.org"
    ],
    "created": "2024-02-26T08:52:13.000000Z",
    "dataset": "zroot/kleene/container/f455de07ac84",
    "env": [],
    "id": "f455de07ac84",
    "image_id": "11370bfb4a88",
    "jail_param": [
      "mount.devfs"
    ],
    "name": "hungry_knuth",
    "network_driver": "ipnet",
    "persist": false,
    "public_ports": [
      {
        "container_port": "80",
        "host_port": "8080",
        "interfaces": [],
        "ip_address": "10.2.3.2",
        "ip_address6": "",
        "protocol": "tcp"
      }
    ],
    "restart_policy": "no",
    "running": false,
    "user": "root"
  },
  "container_endpoints": [
    {
      "container_id": "f455de07ac84",
      "epair": null,
      "id": "",
      "ip_address": "10.2.3.2",
      "ip_address6": "",
      "network_id": "testnet"
    }
  ],
  "container_mountpoints": [
    {
      "container_id": "f455de07ac84",
      "destination": "/app",
      "read_only": false,
      "source": "myvol2",
      "type": "volume"
    },
    {
      "container_id": "f455de07ac84",
      "destination": "/data",
      "read_only": true,
      "source": "/srv/data",
      "type": "nullfs"
    }
  ]
}"#
        );
    }

    #[test]
    fn lsc_rows_are_klees() {
        let mut c = container();
        let image = Image {
            id: id("11370bfb4a88"),
            name: "FreeBSD".into(),
            tag: "latest".into(),
            created: 0,
            parent: None,
            dataset: DatasetName::new("zroot/kleene/image/11370bfb4a88").unwrap(),
            config: ImageConfig::default(),
        };
        assert_eq!(
            container_row(&container_summary(&c, Some(&image)), 1_708_937_533 + 120),
            [
                "f455de07ac84",
                "hungry_knuth",
                "FreeBSD:latest",
                "host freebsd.org",
                "2 minutes ago",
                "no",
                "stopped",
                ""
            ]
        );
        c.runtime.state = RunState::Running;
        c.runtime.jid = Some(12);
        c.config.restart = kleene_core::RestartPolicy::OnStartup;
        let row = container_row(&container_summary(&c, None), 1_708_937_533);
        assert_eq!(row[2], "11370bfb4a88");
        assert_eq!(row[5..], ["yes", "running", "12"]);
    }

    #[test]
    fn image_inspect_is_kleeneds() {
        let image = Image {
            id: id("be56be1db5af"),
            name: "FreeBSD".into(),
            tag: "testing".into(),
            created: 1_700_134_745,
            parent: None,
            dataset: DatasetName::new("zroot/kleene/image/be56be1db5af").unwrap(),
            config: ImageConfig {
                cmd: vec!["/bin/sh".into(), "-c".into(), "echo \"Hello World\"".into()],
                env: vec!["A=é".into()],
                instructions: vec![
                    Instruction {
                        text: "FROM FreeBSD-13.2-STABLE:latest".into(),
                        snapshot: None,
                    },
                    Instruction {
                        text: "RUN ls -lh /".into(),
                        snapshot: Some("@0551db16e1d2".into()),
                    },
                ],
                ..ImageConfig::default()
            },
        };
        let view = image_view(&image);
        let want = r#"{
  "cmd": [
    "/bin/sh",
    "-c",
    "echo \"Hello World\""
  ],
  "created": "2023-11-16T11:39:05.000000Z",
  "dataset": "zroot/kleene/image/be56be1db5af",
  "env": [
    "A=é"
  ],
  "id": "be56be1db5af",
  "instructions": [
    [
      "FROM FreeBSD-13.2-STABLE:latest",
      ""
    ],
    [
      "RUN ls -lh /",
      "@0551db16e1d2"
    ]
  ],
  "name": "FreeBSD",
  "tag": "testing",
  "user": "root"
}"#;
        assert_eq!(json_text(Theme::Fancy, &view).unwrap(), want);
        assert_eq!(
            json_text(Theme::Simple, &view).unwrap(),
            want.replace('é', "\\u00e9")
        );
    }

    #[test]
    fn volume_inspect_is_kleeneds() {
        let v = Volume {
            name: "myvol2".into(),
            dataset: DatasetName::new("zroot/kleene/volumes/myvol2").unwrap(),
            mountpoint: "/zroot/kleene/volumes/myvol2".into(),
            created: 1_709_219_222,
        };
        assert_eq!(
            json_text(Theme::Fancy, &volume_inspect(&v, &[container()])).unwrap(),
            r#"{
  "mountpoints": [
    {
      "container_id": "f455de07ac84",
      "destination": "/app",
      "read_only": false,
      "source": "myvol2",
      "type": "volume"
    }
  ],
  "volume": {
    "created": "2024-02-29T15:07:02.000000Z",
    "dataset": "zroot/kleene/volumes/myvol2",
    "mountpoint": "/zroot/kleene/volumes/myvol2",
    "name": "myvol2"
  }
}"#
        );
        assert_eq!(
            json_text(Theme::Fancy, &volume_inspect(&v, &[])).unwrap(),
            r#"{
  "mountpoints": [],
  "volume": {
    "created": "2024-02-29T15:07:02.000000Z",
    "dataset": "zroot/kleene/volumes/myvol2",
    "mountpoint": "/zroot/kleene/volumes/myvol2",
    "name": "myvol2"
  }
}"#
        );
    }

    #[test]
    fn network_inspect_is_kleeneds() {
        let mut spec = NetworkSpec::new("testnet", NetworkType::Loopback);
        spec.interface = Some("kleene0".into());
        spec.subnet = Some("10.2.3.0/24".parse().unwrap());
        let n = Network {
            id: id("6b933304be4a"),
            name: "testnet".into(),
            spec,
            created: 0,
        };
        assert_eq!(
            json_text(
                Theme::Fancy,
                &network_inspect(&n, &[endpoint("d763328950a2", "10.2.3.1")])
            )
            .unwrap(),
            r#"{
  "network": {
    "gateway": "<auto>",
    "gateway6": "<auto>",
    "icc": true,
    "id": "6b933304be4a",
    "interface": "kleene0",
    "internal": false,
    "name": "testnet",
    "nat": "<host-gateway>",
    "subnet": "10.2.3.0/24",
    "subnet6": "",
    "type": "loopback"
  },
  "network_endpoints": [
    {
      "container_id": "d763328950a2",
      "epair": null,
      "id": "",
      "ip_address": "10.2.3.1",
      "ip_address6": "",
      "network_id": "testnet"
    }
  ]
}"#
        );
        assert_eq!(
            network_row(&network_view(&n)),
            ["6b933304be4a", "testnet", "loopback", "10.2.3.0/24"]
        );
    }
}
