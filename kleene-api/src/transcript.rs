//! The transcripts of builds and base image creations, as kleened sends them on its
//! WebSockets and klee prints them: one rendering of kleene-core's events, so that `klee`
//! reads the same embedded and through kleened.

use std::time::{Duration, Instant};

use kleene_core::Event;

/// kleened's lines around the extraction of a fetched base system.
pub const FETCHED: &str =
    "succesfully fetched base system.\nUnpacking contents and creating image...";
/// kleened's line after the extraction.
pub const EXTRACTED: &str = "succesfully extracted binaries - creating image";

/// What kleened says before it clones or copies a dataset into a base image.
pub fn create_intro(source: &kleene_core::BaseSource) -> Option<&'static str> {
    match source {
        kleene_core::BaseSource::ZfsClone(_) => Some("cloning dataset..."),
        kleene_core::BaseSource::ZfsCopy(_) => {
            Some("copying dataset into the new image, this can take a while...")
        }
        _ => None,
    }
}

/// A size in bytes as people read it: `512 B`, `1.50 KiB`, `3.25 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// A download's line: `downloaded 1.00 KiB of 4.00 KiB (1.00 KiB/s)`.
pub fn download_line(bytes: u64, total: Option<u64>, rate: f64) -> String {
    let rate = human_bytes(rate.max(0.0) as u64);
    match total {
        Some(t) => format!(
            "downloaded {} of {} ({rate}/s)",
            human_bytes(bytes),
            human_bytes(t)
        ),
        None => format!("downloaded {} ({rate}/s)", human_bytes(bytes)),
    }
}

/// An extraction's line, as kleened words it.
pub fn extract_line(entries: u64) -> String {
    format!("extracted {entries} files...")
}

/// A build event as a frame of kleened's build transcript: status lines without their
/// line end (klee prints them with one, see [`printed_build_frame`]), a RUN step's output
/// with its line end. `None` for events that are not told in frames (the start is the
/// `starting` message; a failure's last line is klee's own).
pub fn build_frame(event: &Event) -> Option<String> {
    Some(match event {
        Event::BuildStep { n, total, text } => format!("Step {n}/{total} : {text}"),
        Event::Output { data, .. } => format!("{data}\n"),
        Event::SnapshotCreated { snapshot } => format!("--> Snapshot created: {snapshot}"),
        Event::StepCached { snapshot } => format!("--> Using cache: {snapshot}\n"),
        // kleened sends the reason alone; klee adds the "Failed to build image" line.
        Event::BuildFailed { reason, .. } => reason.clone(),
        Event::Status(s) => format!("{s}\n"),
        _ => return None,
    })
}

/// A frame of the build transcript as klee prints it: the step and snapshot lines with a
/// line end, everything else as it came.
pub fn printed_build_frame(frame: &str) -> String {
    let status = frame.contains("--> Snapshot created: @")
        || (frame.contains("Step ") && frame.contains(" : "))
        || frame.contains("Using user-supplied parent image:");
    if status {
        format!("{frame}\n")
    } else {
        frame.to_string()
    }
}

/// klee's first line of a build, from the `starting` message's image id.
pub fn build_started(image_id: &str) -> String {
    format!("Started to build image with ID {image_id}")
}

/// klee's last line of a failed build that made snapshots.
pub fn build_failed(image_id: &str, snapshot: &str) -> String {
    format!("Failed to build image {image_id}. Most recent snapshot is {snapshot}")
}

/// Turns the events of a base image creation into kleened's lines (without line ends):
/// status lines; the download and extraction at most one line a second each, and their
/// last state once the phase is over; [`FETCHED`] after the download and [`EXTRACTED`]
/// once the image exists. The extraction, which runs while the archive streams in, is
/// told after the download, in kleened's order.
#[derive(Debug, Default)]
pub struct CreateLines {
    download_at: Option<Instant>,
    extract_at: Option<Instant>,
    download_seen: Option<(u64, Option<u64>, f64)>,
    download_printed: Option<u64>,
    download_closed: bool,
    fetched: bool,
    extract_seen: Option<u64>,
    extract_printed: Option<u64>,
    created: bool,
}

/// Whether a line of a phase last told at `at` is due (one a second).
fn due(at: &mut Option<Instant>) -> bool {
    let due = at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
    if due {
        *at = Some(Instant::now());
    }
    due
}

impl CreateLines {
    /// The lines `event` adds.
    pub fn event(&mut self, event: &Event) -> Vec<String> {
        let mut out = Vec::new();
        match event {
            Event::Status(text) => out.push(text.clone()),
            Event::Repaired(text) => out.push(format!("repaired: {text}")),
            Event::Download { bytes, total, rate } => {
                if self.download_closed {
                    return out;
                }
                self.download_seen = Some((*bytes, *total, *rate));
                if due(&mut self.download_at) {
                    self.download_printed = Some(*bytes);
                    out.push(download_line(*bytes, *total, *rate));
                }
                if *total == Some(*bytes) {
                    self.close_download(&mut out);
                    self.announce_fetched(&mut out);
                }
            }
            Event::Extract { entries, .. } => {
                self.extract_seen = Some(*entries);
                // Plain lines wait for the download's end, so they read in kleened's order.
                if self.fetched && due(&mut self.extract_at) {
                    self.extract_printed = Some(*entries);
                    out.push(extract_line(*entries));
                }
            }
            Event::ImageCreated { .. } if !self.created => {
                self.created = true;
                self.close_download(&mut out);
                self.announce_fetched(&mut out);
                self.close_extract(&mut out);
                if self.extract_seen.is_some() {
                    out.push(EXTRACTED.to_string());
                }
            }
            _ => {}
        }
        out
    }

    /// The last state of each phase not told yet (after a failure too).
    pub fn finish(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.close_download(&mut out);
        self.close_extract(&mut out);
        out
    }

    fn close_download(&mut self, out: &mut Vec<String>) {
        if self.download_closed {
            return;
        }
        self.download_closed = true;
        if let Some((b, t, r)) = self.download_seen {
            if self.download_printed != Some(b) {
                self.download_printed = Some(b);
                out.push(download_line(b, t, r));
            }
        }
    }

    fn announce_fetched(&mut self, out: &mut Vec<String>) {
        if self.fetched || self.download_seen.is_none() {
            return;
        }
        self.fetched = true;
        out.push(FETCHED.to_string());
    }

    fn close_extract(&mut self, out: &mut Vec<String>) {
        if let Some(e) = self.extract_seen {
            if self.fetched && self.extract_printed != Some(e) {
                self.extract_printed = Some(e);
                out.push(extract_line(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all(lines: &mut CreateLines, events: Vec<Event>) -> String {
        let mut text = String::new();
        for e in &events {
            for l in lines.event(e) {
                text.push_str(&l);
                text.push('\n');
            }
        }
        for l in lines.finish() {
            text.push_str(&l);
            text.push('\n');
        }
        text
    }

    fn id() -> kleene_core::Id {
        kleene_core::Id::parse("a9835b86808a").unwrap()
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.00 KiB");
        assert_eq!(human_bytes(1536 * 1024), "1.50 MiB");
        assert_eq!(human_bytes(u64::MAX), "16.00 EiB");
    }

    #[test]
    fn a_fetch_reads_like_kleeneds() {
        let download = |bytes, total| Event::Download {
            bytes,
            total,
            rate: 1024.0,
        };
        let extract = |entries| Event::Extract {
            entries,
            bytes: entries * 10,
        };
        let text = all(
            &mut CreateLines::default(),
            vec![
                download(1024, Some(4096)),
                // Extracted while it streams in: told after the download.
                extract(10),
                download(2048, Some(4096)),
                download(4096, Some(4096)),
                extract(50),
                extract(101),
                Event::ImageCreated { id: id() },
            ],
        );
        assert_eq!(
            text,
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
    fn a_download_of_unknown_size_ends_at_the_creation() {
        let text = all(
            &mut CreateLines::default(),
            vec![
                Event::Status("fetching file:///x.txz".into()),
                Event::Download {
                    bytes: 10,
                    total: None,
                    rate: 0.0,
                },
                Event::Extract {
                    entries: 3,
                    bytes: 30,
                },
                Event::ImageCreated { id: id() },
            ],
        );
        assert_eq!(
            text,
            "fetching file:///x.txz\n\
             downloaded 10 B (0 B/s)\n\
             succesfully fetched base system.\n\
             Unpacking contents and creating image...\n\
             extracted 3 files...\n\
             succesfully extracted binaries - creating image\n"
        );
    }

    #[test]
    fn a_failed_fetch_tells_no_success_and_a_clone_nothing() {
        let text = all(
            &mut CreateLines::default(),
            vec![Event::Download {
                bytes: 10,
                total: Some(20),
                rate: 0.0,
            }],
        );
        assert_eq!(text, "downloaded 10 B of 20 B (0 B/s)\n");
        let text = all(
            &mut CreateLines::default(),
            vec![Event::ImageCreated { id: id() }],
        );
        assert_eq!(text, "");
    }

    #[test]
    fn build_frames_print_like_klee() {
        let step = build_frame(&Event::BuildStep {
            n: 2,
            total: 7,
            text: "RUN sysrc postgresql_enable=yes".into(),
        })
        .unwrap();
        assert_eq!(step, "Step 2/7 : RUN sysrc postgresql_enable=yes");
        assert_eq!(printed_build_frame(&step), format!("{step}\n"));
        let snap = build_frame(&Event::SnapshotCreated {
            snapshot: "@fb70baa07e6e".into(),
        })
        .unwrap();
        assert_eq!(
            printed_build_frame(&snap),
            "--> Snapshot created: @fb70baa07e6e\n"
        );
        let out = build_frame(&Event::Output {
            stream: kleene_core::OutputStream::Stdout,
            data: "hello".into(),
        })
        .unwrap();
        assert_eq!(printed_build_frame(&out), "hello\n");
        assert_eq!(build_frame(&Event::BuildStarted { id: id() }), None);
        assert_eq!(
            build_failed("f472c80affa4", "@fb70baa07e6e"),
            "Failed to build image f472c80affa4. Most recent snapshot is @fb70baa07e6e"
        );
    }
}
