//! What klee prints: tables, ages, confirmations, kleened's JSON shapes, and the progress
//! of base image creation. Everything goes to stdout, as klee prints it; errors go to
//! stderr.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kleene_core::{Container, Endpoint, Event, Image, MountSource, Network, RunState, Volume};
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

/// klee's STATUS of a container: `running` or `stopped` (one being started counts as
/// running: `lsc` without `-a` lists it).
pub fn status(state: RunState) -> &'static str {
    match state {
        RunState::Running | RunState::Starting => "running",
        RunState::Created | RunState::Exited => "stopped",
    }
}

/// A row of `lsc`: `image` is the image's `name:tag`, or its id when untagged.
pub fn container_row(c: &Container, image: &str, now: i64) -> Vec<String> {
    vec![
        c.id.to_string(),
        c.name.clone(),
        image.to_string(),
        c.config.cmd.join(" "),
        ago(c.created, now),
        // As klee: "yes" for the on-startup restart policy.
        if c.config.restart == kleene_core::RestartPolicy::OnStartup {
            "yes".into()
        } else {
            "no".into()
        },
        status(c.runtime.state).into(),
        c.runtime.jid.map(|j| j.to_string()).unwrap_or_default(),
    ]
}

/// A row of `lsn`: klee shows the IPv4 subnet only (empty when there is none).
pub fn network_row(n: &Network) -> Vec<String> {
    vec![
        n.id.to_string(),
        n.name.clone(),
        n.spec.kind.to_string(),
        n.spec.subnet.map(|s| s.to_string()).unwrap_or_default(),
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

/// The current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds as kleened writes times (Elixir's `DateTime.to_iso8601` of a UTC time):
/// `2024-02-26T08:52:13.000000Z`.
pub fn iso8601(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000000Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
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

/// A published port as kleened shows it.
#[derive(Debug, Serialize)]
pub struct PublishedPortView {
    container_port: String,
    host_port: String,
    interfaces: Vec<String>,
    ip_address: String,
    ip_address6: String,
    protocol: String,
}

/// A container as kleened shows it.
#[derive(Debug, Serialize)]
pub struct ContainerView {
    cmd: Vec<String>,
    created: String,
    dataset: String,
    env: Vec<String>,
    id: String,
    image_id: String,
    jail_param: Vec<String>,
    name: String,
    network_driver: String,
    persist: bool,
    public_ports: Vec<PublishedPortView>,
    restart_policy: String,
    running: bool,
    user: String,
}

/// An endpoint as kleened shows it; `network_id` is the network's name, as kleened has
/// it.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    container_id: String,
    epair: Option<String>,
    id: String,
    ip_address: String,
    ip_address6: String,
    network_id: String,
}

/// A mount of a container as kleened shows it: `type` is `volume`, or `nullfs` for a
/// directory of the host.
#[derive(Debug, Serialize)]
pub struct MountpointView {
    container_id: String,
    destination: String,
    read_only: bool,
    source: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `klee container inspect`.
#[derive(Debug, Serialize)]
pub struct ContainerInspect {
    container: ContainerView,
    container_endpoints: Vec<EndpointView>,
    container_mountpoints: Vec<MountpointView>,
}

/// An image as kleened shows it (`klee image inspect`).
#[derive(Debug, Serialize)]
pub struct ImageView {
    cmd: Vec<String>,
    created: String,
    dataset: String,
    env: Vec<String>,
    id: String,
    instructions: Vec<[String; 2]>,
    name: String,
    tag: String,
    user: String,
}

/// A volume as kleened shows it.
#[derive(Debug, Serialize)]
pub struct VolumeView {
    created: String,
    dataset: String,
    mountpoint: String,
    name: String,
}

/// `klee volume inspect`.
#[derive(Debug, Serialize)]
pub struct VolumeInspect {
    mountpoints: Vec<MountpointView>,
    volume: VolumeView,
}

/// A network as kleened shows it.
#[derive(Debug, Serialize)]
pub struct NetworkView {
    gateway: String,
    gateway6: String,
    icc: bool,
    id: String,
    interface: String,
    internal: bool,
    name: String,
    nat: String,
    subnet: String,
    subnet6: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `klee network inspect`.
#[derive(Debug, Serialize)]
pub struct NetworkInspect {
    network: NetworkView,
    network_endpoints: Vec<EndpointView>,
}

/// Kleened's user: root when none is set.
fn user_or_root(user: &str) -> String {
    if user.is_empty() {
        "root".into()
    } else {
        user.into()
    }
}

/// An endpoint in kleened's shape. kleene-core has no endpoint ids, so `id` is empty;
/// `epair` is kleened's FreeBSD vnet pair, which kleene-core does not record.
pub fn endpoint_view(e: &Endpoint) -> EndpointView {
    EndpointView {
        container_id: e.container.to_string(),
        epair: None,
        id: String::new(),
        ip_address: e.ipv4.map(|a| a.to_string()).unwrap_or_default(),
        ip_address6: e.ipv6.map(|a| a.to_string()).unwrap_or_default(),
        network_id: e.network_name.clone(),
    }
}

/// The mounts of `c` in kleened's shape.
pub fn mountpoint_views(c: &Container) -> Vec<MountpointView> {
    c.config
        .mounts
        .iter()
        .map(|m| {
            let (source, kind) = match &m.source {
                MountSource::Volume(name) => (name.clone(), "volume"),
                MountSource::HostPath(path) => (path.clone(), "nullfs"),
                _ => (String::new(), ""),
            };
            MountpointView {
                container_id: c.id.to_string(),
                destination: m.destination.clone(),
                read_only: m.read_only,
                source,
                kind,
            }
        })
        .collect()
}

/// A container in kleened's shape; its published ports name the address of its first
/// endpoint that has one, as kleened fills them in.
pub fn container_view(c: &Container, endpoints: &[Endpoint]) -> ContainerView {
    let ip4 = endpoints
        .iter()
        .find_map(|e| e.ipv4)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let ip6 = endpoints
        .iter()
        .find_map(|e| e.ipv6)
        .map(|a| a.to_string())
        .unwrap_or_default();
    ContainerView {
        cmd: c.config.cmd.clone(),
        created: iso8601(c.created),
        dataset: c.dataset.to_string(),
        env: c.config.env.clone(),
        id: c.id.to_string(),
        image_id: c.image_id.to_string(),
        jail_param: c.config.jail_params.iter().map(|p| p.to_string()).collect(),
        name: c.name.clone(),
        network_driver: c.config.network.to_string(),
        persist: c.config.persist,
        public_ports: c
            .config
            .publish
            .iter()
            .map(|p| PublishedPortView {
                container_port: p.container.to_string(),
                host_port: p.host.to_string(),
                interfaces: p.interface.iter().cloned().collect(),
                ip_address: ip4.clone(),
                ip_address6: ip6.clone(),
                protocol: p.protocol.to_string(),
            })
            .collect(),
        restart_policy: c.config.restart.to_string(),
        running: c.runtime.state == RunState::Running,
        user: user_or_root(&c.config.user),
    }
}

/// `klee container inspect`: the container, its endpoints and its mounts.
pub fn container_inspect(c: &Container, endpoints: &[Endpoint]) -> ContainerInspect {
    ContainerInspect {
        container: container_view(c, endpoints),
        container_endpoints: endpoints.iter().map(endpoint_view).collect(),
        container_mountpoints: mountpoint_views(c),
    }
}

/// `klee image inspect`: kleened's image; `cmd` is what containers run (the entrypoint
/// first), `instructions` each step with its snapshot (empty for steps without one).
pub fn image_view(i: &Image) -> ImageView {
    let cfg = &i.config;
    ImageView {
        cmd: cfg.entrypoint.iter().chain(&cfg.cmd).cloned().collect(),
        created: iso8601(i.created),
        dataset: i.dataset.to_string(),
        env: cfg.env.clone(),
        id: i.id.to_string(),
        instructions: cfg
            .instructions
            .iter()
            .map(|s| [s.text.clone(), s.snapshot.clone().unwrap_or_default()])
            .collect(),
        name: i.name.clone(),
        tag: i.tag.clone(),
        user: user_or_root(&cfg.user),
    }
}

/// A volume in kleened's shape.
pub fn volume_view(v: &Volume) -> VolumeView {
    VolumeView {
        created: iso8601(v.created),
        dataset: v.dataset.to_string(),
        mountpoint: v.mountpoint.display().to_string(),
        name: v.name.clone(),
    }
}

/// `klee volume inspect`: the volume and the mounts of it in `containers`.
pub fn volume_inspect(v: &Volume, containers: &[Container]) -> VolumeInspect {
    let mountpoints = containers
        .iter()
        .flat_map(mountpoint_views)
        .filter(|m| m.kind == "volume" && m.source == v.name)
        .collect();
    VolumeInspect {
        mountpoints,
        volume: volume_view(v),
    }
}

/// A network in kleened's shape: gateways `<auto>`, `""` or an address, `nat`
/// `<host-gateway>`, `""` or an interface, absent subnets `""`.
pub fn network_view(n: &Network) -> NetworkView {
    let s = &n.spec;
    NetworkView {
        gateway: s.gateway.to_string(),
        gateway6: s.gateway6.to_string(),
        icc: s.icc,
        id: n.id.to_string(),
        interface: n.interface().to_string(),
        internal: s.internal,
        name: n.name.clone(),
        nat: s.nat.to_string(),
        subnet: s.subnet.map(|x| x.to_string()).unwrap_or_default(),
        subnet6: s.subnet6.map(|x| x.to_string()).unwrap_or_default(),
        kind: s.kind.to_string(),
    }
}

/// `klee network inspect`: the network and its endpoints.
pub fn network_inspect(n: &Network, endpoints: &[Endpoint]) -> NetworkInspect {
    NetworkInspect {
        network: network_view(n),
        network_endpoints: endpoints.iter().map(endpoint_view).collect(),
    }
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

/// kleened's lines around the extraction of a fetched base system.
pub const FETCHED: &str =
    "succesfully fetched base system.\nUnpacking contents and creating image...";
/// kleened's line after the extraction.
pub const EXTRACTED: &str = "succesfully extracted binaries - creating image";

/// Renders the events of a base image creation on stdout: progress bars when stdout is a
/// terminal, plain lines (at most one a second per phase) otherwise; with kleened's
/// lines once the base system is fetched and once it is extracted.
#[derive(Debug)]
pub struct Progress {
    state: Mutex<ProgressState>,
}

/// Where plain lines go.
type Sink = Box<dyn Write + Send>;

struct ProgressState {
    bars: bool,
    out: Sink,
    download: Option<ProgressBar>,
    extract: Option<ProgressBar>,
    download_line_at: Option<Instant>,
    extract_line_at: Option<Instant>,
    download_seen: Option<(u64, Option<u64>, f64)>,
    /// The download's last state was shown.
    download_closed: bool,
    /// `FETCHED` was printed.
    fetched: bool,
    extract_seen: Option<(u64, u64)>,
    /// What was printed last as a plain line, per phase.
    download_printed: Option<u64>,
    extract_printed: Option<u64>,
    created: bool,
}

impl std::fmt::Debug for ProgressState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressState")
            .field("bars", &self.bars)
            .field("fetched", &self.fetched)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// Bars when stdout is a terminal.
    pub fn new() -> Self {
        Self::with(std::io::stdout().is_terminal(), Box::new(std::io::stdout()))
    }

    /// Plain lines (bars when `bars`) written to `out`.
    pub fn with(bars: bool, out: Sink) -> Self {
        Self {
            state: Mutex::new(ProgressState {
                bars,
                out,
                download: None,
                extract: None,
                download_line_at: None,
                extract_line_at: None,
                download_seen: None,
                download_closed: false,
                fetched: false,
                extract_seen: None,
                download_printed: None,
                extract_printed: None,
                created: false,
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
            Event::ImageCreated { .. } => s.created(),
            Event::Download { bytes, total, rate } => s.download(bytes, total, rate),
            Event::Extract { entries, bytes } => s.extract(entries, bytes),
            _ => {}
        }
    }

    /// Ends the bars and prints the last state of each phase (after a failure too).
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

/// kleened's extraction line.
fn extract_line(entries: u64) -> String {
    format!("extracted {entries} files...")
}

/// Whether a line of a phase last printed at `at` is due (one a second).
fn due(at: &mut Option<Instant>) -> bool {
    let due = at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
    if due {
        *at = Some(Instant::now());
    }
    due
}

impl ProgressState {
    fn println(&mut self, text: &str) {
        match self.extract.as_ref().or(self.download.as_ref()) {
            Some(bar) => bar.println(text),
            None => {
                let _ = writeln!(self.out, "{text}");
                let _ = self.out.flush();
            }
        }
    }

    fn download(&mut self, bytes: u64, total: Option<u64>, rate: f64) {
        if self.download_closed {
            return;
        }
        self.download_seen = Some((bytes, total, rate));
        if self.bars {
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
        } else if due(&mut self.download_line_at) {
            self.download_printed = Some(bytes);
            self.println(&download_line(bytes, total, rate));
        }
        if total == Some(bytes) {
            self.close_download();
            self.announce_fetched();
        }
    }

    /// The download's last state: its bar ended, or its last plain line.
    fn close_download(&mut self) {
        if self.download_closed {
            return;
        }
        self.download_closed = true;
        if let Some(bar) = self.download.take() {
            bar.finish();
        } else if let Some((b, t, r)) = self.download_seen {
            if self.download_printed != Some(b) {
                self.download_printed = Some(b);
                self.println(&download_line(b, t, r));
            }
        }
    }

    /// kleened's `FETCHED` lines, once, after a download.
    fn announce_fetched(&mut self) {
        if self.fetched || self.download_seen.is_none() {
            return;
        }
        self.fetched = true;
        self.println(FETCHED);
    }

    fn extract(&mut self, entries: u64, bytes: u64) {
        self.extract_seen = Some((entries, bytes));
        if self.bars {
            // The archive is extracted while it streams in: with bars the download is
            // told over once extraction shows.
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
            bar.set_message(format!("{entries} files, {}", HumanBytes(bytes)));
        } else if self.fetched && due(&mut self.extract_line_at) {
            // Plain lines wait for the download's end, so they read in kleened's order.
            self.extract_printed = Some(entries);
            self.println(&extract_line(entries));
        }
    }

    /// The extraction's last state: its spinner ended, or its last plain line once the
    /// download was told over.
    fn close_extract(&mut self) {
        let bar = self.extract.take();
        match (bar, self.extract_seen) {
            (Some(bar), Some((e, b))) => {
                bar.finish_with_message(format!("{e} files, {}", HumanBytes(b)));
                self.extract_printed = Some(e);
            }
            (Some(bar), None) => bar.finish(),
            (None, Some((e, _))) if self.fetched && self.extract_printed != Some(e) => {
                self.extract_printed = Some(e);
                self.println(&extract_line(e));
            }
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
    fn a_fetch_reads_like_kleeneds() {
        let buf = Buf::default();
        let p = Progress::with(false, Box::new(buf.clone()));
        let id = kleene_core::Id::parse("a9835b86808a").unwrap();
        let download = |bytes, total| Event::Download {
            bytes,
            total,
            rate: 1024.0,
        };
        p.event(download(1024, Some(4096)));
        // Extracted while it streams in: told after the download.
        p.event(Event::Extract {
            entries: 10,
            bytes: 100,
        });
        p.event(download(2048, Some(4096)));
        p.event(download(4096, Some(4096)));
        p.event(Event::Extract {
            entries: 50,
            bytes: 500,
        });
        p.event(Event::Extract {
            entries: 101,
            bytes: 1000,
        });
        p.event(Event::ImageCreated { id });
        p.finish();
        assert_eq!(
            buf.text(),
            "downloaded 1.00 KiB of 4.00 KiB (1.00 KiB/s)\n\
             downloaded 4.00 KiB of 4.00 KiB (1.00 KiB/s)\n\
             succesfully fetched base system.\n\
             Unpacking contents and creating image...\n\
             extracted 50 files...\n\
             extracted 101 files...\n\
             succesfully extracted binaries - creating image\n"
        );
    }

    #[test]
    fn a_download_of_unknown_size_ends_at_the_finish() {
        let buf = Buf::default();
        let p = Progress::with(false, Box::new(buf.clone()));
        p.event(Event::Status("fetching file:///x.txz".into()));
        p.event(Event::Download {
            bytes: 10,
            total: None,
            rate: 0.0,
        });
        p.event(Event::Extract {
            entries: 3,
            bytes: 30,
        });
        p.event(Event::ImageCreated {
            id: kleene_core::Id::parse("a9835b86808a").unwrap(),
        });
        assert_eq!(
            buf.text(),
            "fetching file:///x.txz\n\
             downloaded 10 B (0 B/s)\n\
             succesfully fetched base system.\n\
             Unpacking contents and creating image...\n\
             extracted 3 files...\n\
             succesfully extracted binaries - creating image\n"
        );
    }

    #[test]
    fn a_failed_fetch_tells_no_success() {
        let buf = Buf::default();
        let p = Progress::with(false, Box::new(buf.clone()));
        p.event(Event::Download {
            bytes: 10,
            total: Some(20),
            rate: 0.0,
        });
        p.finish();
        assert_eq!(buf.text(), "downloaded 10 B of 20 B (0 B/s)\n");
        // A clone has no phases: nothing to tell.
        let buf = Buf::default();
        let p = Progress::with(false, Box::new(buf.clone()));
        p.event(Event::ImageCreated {
            id: kleene_core::Id::parse("a9835b86808a").unwrap(),
        });
        p.finish();
        assert_eq!(buf.text(), "");
    }

    // ---- kleened's shapes ----

    use kleene_core::kleene_zfs::{DatasetName, SnapshotName};
    use kleene_core::{
        ContainerConfig, Driver, Id, ImageConfig, Instruction, MountSpec, NetworkSpec, NetworkType,
        PortRange, Protocol, PublishedPort, Runtime,
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
        assert_eq!(
            container_row(&c, "FreeBSD:latest", 1_708_937_533 + 120),
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
        let row = container_row(&c, "11370bfb4a88", 1_708_937_533);
        assert_eq!(row[6..], ["running", "12"]);
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
            network_row(&n),
            ["6b933304be4a", "testnet", "loopback", "10.2.3.0/24"]
        );
    }
}
