//! The comparison chart: one panel per comparison, kleene's median beside its peer's,
//! with the ratio and the target it is held to. Drawn with plotters into a PNG; text in
//! DejaVu Sans (Debian's `fonts-dejavu-core`).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Where the chart's font is (Debian's `fonts-dejavu-core`).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The font could not be read.
    #[error("font {path}: {source} (install fonts-dejavu-core)")]
    Font {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The font file is not a font.
    #[error("font {0}: not a TrueType font")]
    BadFont(String),
    /// Drawing or writing the PNG failed.
    #[error("drawing {path}: {message}")]
    Draw { path: String, message: String },
}

/// One comparison: kleene's median and its peer's, in milliseconds.
#[derive(Debug, Clone)]
pub struct Bar {
    /// What was compared, e.g. `unchanged rebuild`.
    pub label: String,
    /// The peer, e.g. `buildah bud --layers`.
    pub peer: String,
    /// kleene's median.
    pub ours_ms: f64,
    /// The peer's median.
    pub peer_ms: f64,
    /// The target for ours / peer.
    pub target: f64,
}

const KLEENE: RGBColor = RGBColor(31, 119, 180);
const PEER: RGBColor = RGBColor(150, 150, 150);
const PANEL: u32 = 130;

/// Draws `bars` into the PNG `path`, `machine` in the title.
pub fn draw(path: &Path, bars: &[Bar], machine: &str) -> Result<(), ChartError> {
    let font = std::fs::read(FONT).map_err(|source| ChartError::Font {
        path: FONT.into(),
        source,
    })?;
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| ChartError::BadFont(FONT.into()))?;
    let shown = path.display().to_string();
    let fail = |e: &dyn std::fmt::Display| ChartError::Draw {
        path: shown.clone(),
        message: e.to_string(),
    };

    let height = 70 + PANEL * bars.len().max(1) as u32;
    let root = BitMapBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let root = root
        .titled(
            &format!("kleene vs podman/buildah: medians, lower is better. {machine}"),
            ("sans-serif", 18),
        )
        .map_err(|e| fail(&e))?;
    let panels = root.split_evenly((bars.len().max(1), 1));
    for (bar, area) in bars.iter().zip(panels.iter()) {
        let ratio = bar.ours_ms / bar.peer_ms;
        let max = bar.ours_ms.max(bar.peer_ms) * 1.6;
        let met = if ratio <= bar.target { "met" } else { "missed" };
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{}: ratio {ratio:.2} (target ≤ {:.2}, {met})",
                    bar.label, bar.target
                ),
                ("sans-serif", 15),
            )
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(8)
            .build_cartesian_2d(0.0..max, 0.0..2.0)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("ms")
            .x_labels(6)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| fail(&e))?;
        for (i, (name, value, color)) in [
            ("kleene", bar.ours_ms, KLEENE),
            (bar.peer.as_str(), bar.peer_ms, PEER),
        ]
        .into_iter()
        .enumerate()
        {
            let y0 = 1.15 - i as f64 * 0.95;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y0), (value, y0 + 0.7)],
                    color.filled(),
                )))
                .map_err(|e| fail(&e))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{name}: {value:.0} ms"),
                    (value + max * 0.01, y0 + 0.5),
                    ("sans-serif", 13),
                )))
                .map_err(|e| fail(&e))?;
        }
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_one_panel_per_comparison() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let png = dir.path().join("chart.png");
        let bars = vec![
            Bar {
                label: "run --rm IMAGE /bin/true".into(),
                peer: "podman run --rm".into(),
                ours_ms: 120.0,
                peer_ms: 600.0,
                target: 0.2,
            },
            Bar {
                label: "unchanged rebuild".into(),
                peer: "buildah bud --layers".into(),
                ours_ms: 900.0,
                peer_ms: 3000.0,
                target: 0.2,
            },
        ];
        draw(&png, &bars, "test machine").expect("the chart is drawn");
        let bytes = std::fs::read(&png).expect("the chart is written");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, at bytes 16..24.
        let width = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let height = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes"));
        assert_eq!((width, height), (1000, 70 + 2 * PANEL));
    }
}
