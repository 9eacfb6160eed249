//! A picture of a training run (`trainer --plot FILE`, `moira-plot METRICS.jsonl -o FILE`):
//! the mean training loss per epoch on the left, and, when the run was validated, every
//! validation metric (precision@K, recall@K, NDCG@K) per epoch on the right.
//!
//! `FILE.svg` is drawn with plotters' SVG backend (text as SVG `<text>`), `FILE.png` with its
//! bitmap backend and encoded by the `png` crate; text is laid out and rasterised with the
//! DejaVu Sans font compiled into the binary (no system fonts or libraries). The picture is
//! drawn in memory and written to a temporary file renamed onto `FILE`, so a reader never
//! sees half a picture; the trainer redraws it after every epoch.
//!
//! The metrics log (`trainer --metrics-log`, one JSON object per epoch) gives the points:
//! `epoch` (0-based; drawn 1-based), `loss`, and `validation.metrics[] = {k, precision,
//! recall, ndcg}`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, bail, Context, Result};
use moira::train::EpochReport;
use plotters::coord::Shift;
use plotters::prelude::*;

const SIZE: (u32, u32) = (1000, 420);

/// Line colours (matplotlib's "tab10").
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The curves of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curves {
    /// (epoch, mean training loss).
    pub loss: Vec<(f64, f64)>,
    /// Validation metric name (`recall@20`) → (epoch, value).
    pub metrics: BTreeMap<String, Vec<(f64, f64)>>,
}

impl Curves {
    /// Adds one epoch's report.
    pub fn push(&mut self, r: &EpochReport) {
        let x = f64::from(r.epoch) + 1.0;
        self.loss.push((x, r.loss));
        if let Some(v) = &r.validation {
            for m in v.means() {
                for (name, value) in [
                    ("precision", m.precision),
                    ("recall", m.recall),
                    ("ndcg", m.ndcg),
                ] {
                    self.add(format!("{name}@{}", m.k), x, value);
                }
            }
        }
    }

    fn add(&mut self, name: String, x: f64, y: f64) {
        self.metrics.entry(name).or_default().push((x, y));
    }

    /// Reads a metrics log (see the module documentation); errors name `file:line`.
    pub fn from_jsonl(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut c = Curves::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("{}:{}", path.display(), i + 1);
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}: not a JSON object", at()))?;
            let num = |v: &serde_json::Value, key: &str| {
                v.get(key)
                    .and_then(serde_json::Value::as_f64)
                    .with_context(|| format!("{}: `{key}` is missing or not a number", at()))
            };
            let x = num(&v, "epoch")? + 1.0;
            c.loss.push((x, num(&v, "loss")?));
            if let Some(metrics) = v.pointer("/validation/metrics").and_then(|m| m.as_array()) {
                for m in metrics {
                    let k = num(m, "k")?;
                    for name in ["precision", "recall", "ndcg"] {
                        c.add(format!("{name}@{k}"), x, num(m, name)?);
                    }
                }
            }
        }
        if c.loss.is_empty() {
            bail!("{}: no epochs in the metrics log", path.display());
        }
        Ok(c)
    }

    /// Draws the curves into `path` (`.svg` or `.png`), atomically.
    pub fn draw(&self, path: &Path) -> Result<()> {
        let bytes = match path.extension().and_then(|e| e.to_str()) {
            Some("svg") => {
                let mut svg = String::new();
                {
                    let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
                    self.draw_on(&root)?;
                }
                svg.into_bytes()
            }
            Some("png") => {
                let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
                {
                    let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
                    self.draw_on(&root)?;
                }
                let mut png_bytes = Vec::new();
                let mut enc = png::Encoder::new(&mut png_bytes, SIZE.0, SIZE.1);
                enc.set_color(png::ColorType::Rgb);
                enc.set_depth(png::BitDepth::Eight);
                enc.write_header()
                    .and_then(|mut w| w.write_image_data(&rgb))
                    .map_err(|e| anyhow!("{}: cannot encode the PNG: {e}", path.display()))?;
                png_bytes
            }
            _ => bail!(
                "{}: a plot is an .svg or a .png file (by its extension)",
                path.display()
            ),
        };
        write_atomically(path, &bytes)
    }

    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        register_font();
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the plot: {e}");
        root.fill(&WHITE).map_err(err)?;
        let panels = if self.metrics.is_empty() {
            vec![root.clone()]
        } else {
            let (l, r) = root.split_horizontally(SIZE.0 / 2);
            vec![l, r]
        };
        let loss = vec![("loss".to_owned(), self.loss.clone())];
        let upper = SeriesLabelPosition::UpperRight;
        panel(
            &panels[0],
            "training loss",
            "mean loss per example",
            &loss,
            upper,
        )
        .map_err(err)?;
        if let Some(right) = panels.get(1) {
            let series: Vec<(String, Vec<(f64, f64)>)> = self
                .metrics
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let lower = SeriesLabelPosition::LowerRight;
            panel(right, "validation", "metric", &series, lower).map_err(err)?;
        }
        root.present().map_err(err)?;
        Ok(())
    }
}

/// One chart: `series` (name, points) against the epoch.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    legend: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let points = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let finite = |v: f64| v.is_finite();
    let x_max = points()
        .map(|p| p.0)
        .filter(|&v| finite(v))
        .fold(1.0, f64::max);
    let (mut y_min, mut y_max) = points()
        .map(|p| p.1)
        .filter(|&v| finite(v))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !(y_min.is_finite() && y_max.is_finite()) {
        (y_min, y_max) = (0.0, 1.0);
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-6);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5..x_max.max(2.0) + 0.5, (y_min - pad)..(y_max + pad))?;
    chart
        .configure_mesh()
        .x_max_light_lines(1)
        .y_max_light_lines(1)
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let (r, g, b) = PALETTE[i % PALETTE.len()];
        let color = RGBColor(r, g, b).to_rgba();
        let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| finite(p.1)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Writes `bytes` to `.<name>.<pid>.tmp` beside `path`, then renames it onto `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Registers DejaVu Sans as plotters' `sans-serif` (once).
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is valid (a fixed asset): registration cannot fail.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}
