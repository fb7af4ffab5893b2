//! Plots of a benchmark report, each as SVG and PNG (plotters; text drawn with a system TrueType
//! font through ab_glyph, PNG encoded with the `png` crate): record loss vs offered rate per
//! system (one panel per profile), max lossless records/s, CPU-seconds per million records, and
//! when e2e-xdp ran, the max lossless rate of each XDP mode measured.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use plotters::{
    coord::{Shift, types::RangedCoordf64},
    prelude::*,
};

use super::{e2e::Sweep, report::Report};

/// Fonts tried, in order, for labels.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

const SIZE: (u32, u32) = (960, 540);

/// Register a TrueType font as "sans-serif" (once); the path used, or why none was found.
fn register_font() -> anyhow::Result<&'static str> {
    static FONT: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        FONTS.iter().copied().find(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
    .ok_or_else(|| anyhow!("no TrueType font found (looked for {})", FONTS.join(", ")))
}

/// Which chart.
#[derive(Clone, Copy, Debug)]
enum Chart {
    Loss,
    MaxRate,
    Cpu,
    Xdp,
}

impl Chart {
    fn file_stem(self) -> &'static str {
        match self {
            Chart::Loss => "loss-vs-offered-rate",
            Chart::MaxRate => "max-lossless-rate",
            Chart::Cpu => "cpu-per-million-records",
            Chart::Xdp => "xdp-modes",
        }
    }
}

/// Write every chart as SVG and PNG into `dir`; the files written.
pub fn write_plots(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    register_font()?;
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut charts = vec![Chart::Loss, Chart::MaxRate, Chart::Cpu];
    if !xdp_bars(report).is_empty() {
        charts.push(Chart::Xdp);
    }
    for chart in charts {
        let svg = dir.join(format!("{}.svg", chart.file_stem()));
        {
            let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
            draw(chart, report, &root)?;
            root.present().map_err(|e| anyhow!("{e}"))?;
        }
        written.push(svg);
        let png_path = dir.join(format!("{}.png", chart.file_stem()));
        let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
            draw(chart, report, &root)?;
            root.present().map_err(|e| anyhow!("{e}"))?;
        }
        let file = std::fs::File::create(&png_path)
            .with_context(|| format!("creating {}", png_path.display()))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header()?.write_image_data(&rgb)?;
        written.push(png_path);
    }
    Ok(written)
}

fn draw<DB: DrawingBackend>(
    chart: Chart,
    report: &Report,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    match chart {
        Chart::Loss => draw_loss(report, root),
        Chart::MaxRate => draw_bars(
            root,
            "max lossless records/s (< 0.01 % loss)",
            "records/s",
            &bars(report, |s| Some(s.max_lossless_records_per_sec)),
        ),
        Chart::Cpu => draw_bars(
            root,
            "receiver CPU-seconds per million records",
            "CPU-s / M records",
            &bars(report, |s| s.cpu_seconds_per_million_records),
        ),
        Chart::Xdp => draw_bars(
            root,
            "e2e-xdp: max lossless datagrams/s per mode (veth, sender on one core)",
            "datagrams/s",
            &xdp_bars(report),
        ),
    }
}

/// `(mode, max lossless datagrams/s)` of the e2e-xdp modes that were measured.
fn xdp_bars(report: &Report) -> Vec<(String, f64)> {
    report
        .xdp
        .iter()
        .flat_map(|x| &x.modes)
        .filter(|m| m.available)
        .map(|m| {
            let label = m
                .ratio_to_drop
                .map_or_else(|| m.mode.clone(), |r| format!("{} ({r:.2}×)", m.mode));
            (label, m.max_lossless_datagrams_per_sec)
        })
        .collect()
}

/// `(label, value)` per sweep that has a value.
fn bars(report: &Report, value: impl Fn(&Sweep) -> Option<f64>) -> Vec<(String, f64)> {
    report
        .sweeps
        .iter()
        .filter_map(|s| {
            let profile = s.profile.strip_prefix("ovs-").unwrap_or(&s.profile);
            let system = s.system.strip_prefix("collector-").unwrap_or(&s.system);
            Some((format!("{profile} {system}"), value(s)?))
        })
        .collect()
}

fn system_color(system: &str) -> RGBColor {
    match system {
        "collector-w1" => RGBColor(31, 119, 180),
        s if s.starts_with("collector") => RGBColor(44, 160, 44),
        "nfcapd" | "sfcapd" => RGBColor(214, 39, 40),
        "nfacctd" | "sfacctd" => RGBColor(255, 127, 14),
        _ => RGBColor(148, 103, 189),
    }
}

fn draw_loss<DB: DrawingBackend>(
    report: &Report,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    let mut profiles: Vec<&str> = report.sweeps.iter().map(|s| s.profile.as_str()).collect();
    profiles.dedup();
    let panels = root.split_evenly((1, profiles.len().max(1)));
    for (panel, profile) in panels.iter().zip(&profiles) {
        let sweeps: Vec<&Sweep> = report
            .sweeps
            .iter()
            .filter(|s| s.profile == *profile)
            .collect();
        let max_rate = sweeps
            .iter()
            .flat_map(|s| s.trials.iter().map(|t| t.sent_rate))
            .fold(1.0, f64::max);
        let max_loss = sweeps
            .iter()
            .flat_map(|s| s.trials.iter().map(|t| t.loss * 100.0))
            .fold(0.1, f64::max);
        let mut chart: ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>> =
            ChartBuilder::on(panel)
                .caption(format!("{profile}: loss vs rate"), ("sans-serif", 18))
                .margin(8)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..max_rate * 1.05, 0.0..max_loss * 1.1)
                .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("datagrams/s sent")
            .y_desc("records lost %")
            .x_labels(4)
            .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for s in &sweeps {
            let mut points: Vec<(f64, f64)> = s
                .trials
                .iter()
                .map(|t| (t.sent_rate, t.loss * 100.0))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let color = system_color(&s.system);
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(s.system.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(|e| anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    bars: &[(String, f64)],
) -> anyhow::Result<()> {
    let top = bars.iter().map(|b| b.1).fold(1e-9, f64::max) * 1.15;
    let n = bars.len().max(1) as i32;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top)
        .map_err(|e| anyhow!("{e}"))?;
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => bars
            .get(usize::try_from(*i).unwrap_or(usize::MAX))
            .map_or_else(String::new, |b| b.0.clone()),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_desc)
        .x_labels(bars.len().max(1))
        .x_label_formatter(&label)
        .y_label_formatter(&|v| human(*v))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (name, value)) in bars.iter().enumerate() {
        let system = name.split(' ').nth(1).unwrap_or(name);
        let system = if system.starts_with('w') {
            format!("collector-{system}")
        } else {
            system.to_string()
        };
        let i = i as i32;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *value),
                ],
                system_color(&system).filled(),
            )))
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

/// 2.5M, 310k, 0.80: short axis labels.
fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.2}")
    }
}
