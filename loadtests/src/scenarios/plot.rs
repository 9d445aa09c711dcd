//! PNG plots of a report with `plotters` (bitmap backend; text through `ab_glyph` with DejaVu Sans
//! from `/usr/share/fonts/truetype/dejavu`, Debian's `fonts-dejavu-core`): latency percentiles per
//! scenario, throughput per run, per-slot use of each strategy, and the overload timeline.
//! Without the font no plot is drawn (the report says so) — the numbers are all in the tables.

use std::path::Path;

use anyhow::{anyhow, Context as _};
use plotters::prelude::*;

use super::report::Report;
use super::ScenarioResult;

pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the font once; false when it is not installed.
fn font_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| match std::fs::read(FONT) {
        // Leaked once per process: plotters keeps registered fonts for the process's life.
        Ok(bytes) => {
            plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice())).is_ok()
        }
        Err(_) => false,
    })
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// Draws every plot into `dir`; returns the file names written.
pub fn draw_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<String>> {
    if !font_ready() {
        return Err(anyhow!(
            "font {FONT} not found (apt-get install fonts-dejavu-core): no plots drawn"
        ));
    }
    let mut files = Vec::new();
    for s in &report.scenarios {
        if s.runs.iter().any(|r| r.result.latency.count > 0) {
            let name = format!("latency-{}.png", s.id);
            latency(s, &dir.join(&name)).with_context(|| name.clone())?;
            files.push(name);
        }
    }
    if report.scenarios.iter().any(|s| !s.runs.is_empty()) {
        throughput(report, &dir.join("throughput.png")).context("throughput.png")?;
        files.push("throughput.png".into());
    }
    if let Some(f) = report.scenarios.iter().find(|s| !s.utilization.is_empty()) {
        utilization(f, &dir.join("utilization.png")).context("utilization.png")?;
        files.push("utilization.png".into());
    }
    if let Some(g) = report.scenarios.iter().find(|s| s.id == "g" && !s.runs.is_empty()) {
        timeline(g, &dir.join("timeline-g.png")).context("timeline-g.png")?;
        files.push("timeline-g.png".into());
    }
    Ok(files)
}

/// Percentile curves (p50, p90, p99, p99.9, max) of each run of a scenario, log scale.
fn latency(s: &ScenarioResult, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let runs: Vec<_> = s.runs.iter().filter(|r| r.result.latency.count > 0).collect();
    let points = |r: &crate::loadgen::stats::LoadResult| {
        let l = &r.latency;
        [l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms]
    };
    let (mut lo, mut hi) = (f64::MAX, 0.0f64);
    for r in &runs {
        for v in points(&r.result) {
            lo = lo.min(v.max(0.001));
            hi = hi.max(v);
        }
    }
    let (lo, hi) = ((lo / 2.0).max(0.001), (hi * 2.0).max(0.01));
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: latency percentiles (ms, log scale)", s.title),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..4.0, (lo..hi).log_scale())
        .map_err(err)?;
    let names = ["p50", "p90", "p99", "p99.9", "max"];
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| names.get(x.round() as usize).copied().unwrap_or("").to_owned())
        .y_desc("ms")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (i, r) in runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = points(&r.result)
            .iter()
            .enumerate()
            .map(|(x, y)| (x as f64, y.max(lo)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(r.result.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// One horizontal bar per run: successful requests per second.
fn throughput(report: &Report, path: &Path) -> anyhow::Result<()> {
    let rows: Vec<(String, f64, usize)> = report
        .scenarios
        .iter()
        .enumerate()
        .flat_map(|(si, s)| {
            s.runs
                .iter()
                .map(move |r| (format!("{} {}", s.id, r.result.label), r.result.throughput_rps, si))
        })
        .collect();
    let height = (80 + rows.len() * 22).clamp(300, 4000) as u32;
    let root = BitMapBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    // Room on the right of the longest bar for its label.
    let max = rows.iter().map(|r| r.1).fold(1.0f64, f64::max) * 1.7;
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "throughput per run (successful req/s; colour = scenario)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(10)
        .build_cartesian_2d(0f64..max, 0f64..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, v, si))| {
            let top = n as f64 - i as f64 - 0.1;
            let color = PALETTE[*si % PALETTE.len()];
            Rectangle::new([(0.0, top - 0.8), (*v, top)], color.filled())
        }))
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (label, v, _))| {
            let y = n as f64 - i as f64 - 0.15;
            Text::new(format!(" {v:.0}  {label}"), (*v, y), ("sans-serif", 13))
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Leases per slot (sorted) for each run of the strategies scenario, one panel per run.
fn utilization(s: &ScenarioResult, path: &Path) -> anyhow::Result<()> {
    let n = s.utilization.len();
    let cols = 4usize;
    let rows = n.div_ceil(cols).max(1);
    let root = BitMapBackend::new(path, (1400, (300 * rows + 50) as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "leases per upstream session (slot), sorted; colour = endpoint",
            ("sans-serif", 22),
        )
        .map_err(err)?;
    let panels = root.split_evenly((rows, cols));
    let mut endpoints: Vec<String> = s
        .utilization
        .iter()
        .flat_map(|u| u.slots.iter().map(|x| x.endpoint.clone()))
        .collect();
    endpoints.sort();
    endpoints.dedup();
    for (u, panel) in s.utilization.iter().zip(panels.iter()) {
        let max = u.slots.iter().map(|x| x.uses).max().unwrap_or(1).max(1) as f64 * 1.15;
        let k = u.slots.len().max(1);
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{} (max/mean {:.2})", u.label, u.skew_max_over_mean),
                ("sans-serif", 15),
            )
            .margin(8)
            .x_label_area_size(20)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..k as f64, 0f64..max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(k.min(10))
            .x_label_formatter(&|x| format!("{}", x.floor() as i64 + 1))
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(u.slots.iter().enumerate().map(|(i, slot)| {
                let e = endpoints.iter().position(|e| e == &slot.endpoint).unwrap_or(0);
                let color = PALETTE[e % PALETTE.len()];
                Rectangle::new(
                    [(i as f64 + 0.1, 0.0), (i as f64 + 0.9, slot.uses as f64)],
                    color.filled(),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// The overload scenario second by second: successful and 503 answers per second, and p99.
fn timeline(s: &ScenarioResult, path: &Path) -> anyhow::Result<()> {
    let mut pts: Vec<(f64, f64, f64, f64)> = Vec::new(); // (t, ok, 503, p99)
    let mut marks = Vec::new();
    let mut offset = 0.0;
    for r in &s.runs {
        marks.push((offset, r.result.label.clone()));
        for p in &r.result.timeline {
            pts.push((
                offset + p.t_s as f64,
                p.ok as f64,
                p.rejected_503 as f64,
                p.p99_ms.max(0.01),
            ));
        }
        offset += r.result.timeline.len() as f64;
    }
    let root = BitMapBackend::new(path, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(380);
    let tmax = offset.max(1.0);
    let ymax = pts.iter().map(|p| p.1.max(p.2)).fold(1.0f64, f64::max) * 1.1;
    let mut c1 = ChartBuilder::on(&top)
        .caption(format!("{}: answers per second", s.title), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax, 0f64..ymax)
        .map_err(err)?;
    c1.configure_mesh()
        .label_style(("sans-serif", 13))
        .x_desc("s (phases back to back)")
        .draw()
        .map_err(err)?;
    let (ok_color, rej_color) = (PALETTE[2], PALETTE[3]);
    c1.draw_series(LineSeries::new(
        pts.iter().map(|p| (p.0, p.1)),
        ok_color.stroke_width(2),
    ))
    .map_err(err)?
    .label("ok / s")
    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ok_color.stroke_width(3)));
    c1.draw_series(LineSeries::new(
        pts.iter().map(|p| (p.0, p.2)),
        rej_color.stroke_width(2),
    ))
    .map_err(err)?
    .label("503 / s")
    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], rej_color.stroke_width(3)));
    for (x, label) in &marks {
        c1.draw_series(std::iter::once(PathElement::new(
            vec![(*x, 0.0), (*x, ymax)],
            BLACK.mix(0.4),
        )))
        .map_err(err)?;
        c1.draw_series(std::iter::once(Text::new(
            label.clone(),
            (*x + 0.2, ymax * 0.95),
            ("sans-serif", 14),
        )))
        .map_err(err)?;
    }
    c1.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let pmax = pts.iter().map(|p| p.3).fold(1.0f64, f64::max) * 2.0;
    let mut c2 = ChartBuilder::on(&bottom)
        .caption("p99 of successful answers per second (ms, log)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax, (0.01f64..pmax).log_scale())
        .map_err(err)?;
    c2.configure_mesh()
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    c2.draw_series(LineSeries::new(
        pts.iter().filter(|p| p.1 > 0.0).map(|p| (p.0, p.3)),
        PALETTE[0].stroke_width(2),
    ))
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
