//! SVG charts: per scenario, throughput vs size and CPU per GB vs size, one line per
//! engine, sizes on a log axis.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use zcopy::EngineKind;

use super::{Exporter, Output, fmt_num};
use crate::fmt_size;
use crate::report::{BenchResult, Figures, ScenarioResult};

/// Renders `<scenario>-throughput.svg` and `<scenario>-cpu.svg` per scenario.
#[derive(Clone, Copy, Debug, Default)]
pub struct Svg;

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 600;
/// Room on the right for the legend, outside the plot.
const LEGEND_W: u32 = 170;

/// Distinct colours (Tableau 10 without brown), one per engine after read-write.
const COLOURS: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
];

/// The same colour for an engine in every chart: read-write black, auto brown.
fn colour(row: &str) -> RGBColor {
    match EngineKind::ALL.iter().position(|k| k.name() == row) {
        Some(0) => RGBColor(0, 0, 0),
        Some(i) => COLOURS[(i - 1) % COLOURS.len()],
        None => RGBColor(140, 86, 75),
    }
}

/// A linear axis over log2(size) whose ticks are exactly the measured sizes.
struct SizeAxis {
    range: Range<f64>,
    keys: Vec<f64>,
}

impl Ranged for SizeAxis {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let t = if span > 0.0 {
            (value - self.range.start) / span
        } else {
            0.5
        };
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// A logarithmic axis with ticks at 1, 2 and 5 times powers of ten.
struct LogAxis {
    range: Range<f64>,
}

impl LogAxis {
    fn new(lo: f64, hi: f64) -> LogAxis {
        let lo = lo.max(1e-12);
        LogAxis {
            range: lo..hi.max(lo * 10.0),
        }
    }
}

impl Ranged for LogAxis {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.range.start.log10(), self.range.end.log10());
        let t = (value.max(1e-300).log10() - a) / (b - a);
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let mut keys = Vec::new();
        let (lo, hi) = (self.range.start, self.range.end);
        let light = hint.weight().allow_light_points();
        let mut decade = 10f64.powf(lo.log10().floor());
        while decade <= hi {
            let steps: &[f64] = if light {
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
            } else {
                &[1.0, 2.0, 5.0]
            };
            keys.extend(
                steps
                    .iter()
                    .map(|m| m * decade)
                    .filter(|v| (lo..=hi).contains(v)),
            );
            decade *= 10.0;
        }
        keys
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// A tick label: at most three significant digits, no trailing zeros.
fn axis_num(v: f64) -> String {
    if v.abs() >= 1000.0 || v == 0.0 {
        return fmt_num(v);
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// What a chart plots.
struct Chart {
    suffix: &'static str,
    title: String,
    y_desc: &'static str,
    log_y: bool,
    value: fn(&Figures) -> f64,
}

fn draw(s: &ScenarioResult, c: &Chart) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let rows = s.rows();
    let series: Vec<(String, Vec<(f64, f64)>)> = rows
        .iter()
        .map(|row| {
            let pts = s
                .sizes
                .iter()
                .filter_map(|&size| s.get(row, size).map(|f| (size, (c.value)(f))))
                .filter(|(_, v)| v.is_finite() && (!c.log_y || *v > 0.0))
                .map(|(size, v)| ((size as f64).log2(), v))
                .collect();
            (row.clone(), pts)
        })
        .collect();
    let xs: Vec<f64> = s.sizes.iter().map(|&n| (n as f64).log2()).collect();
    let (x0, x1) = match (xs.first(), xs.last()) {
        (Some(&a), Some(&b)) => (a - 0.5, b + 0.5),
        _ => (0.0, 1.0),
    };
    let ys = series.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y));
    let (ymin, ymax) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    let ymax = if ymax > 0.0 { ymax } else { 1.0 };
    let x_fmt = |v: &f64| fmt_size(v.exp2().round() as u64);
    let y_fmt = |v: &f64| axis_num(*v);

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&c.title, ("sans-serif", 24))
            .margin(16)
            .margin_right(LEGEND_W)
            .x_label_area_size(50)
            .y_label_area_size(80);
        let x_range = || SizeAxis {
            range: x0..x1,
            keys: xs.clone(),
        };

        // The two y scales need two chart types; a macro keeps one drawing routine.
        macro_rules! plot {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc("transfer size (log scale)")
                    .y_desc(c.y_desc)
                    .x_label_formatter(&x_fmt)
                    .y_label_formatter(&y_fmt)
                    .label_style(("sans-serif", 16))
                    .axis_desc_style(("sans-serif", 17))
                    .light_line_style(RGBColor(235, 235, 235))
                    .bold_line_style(RGBColor(215, 215, 215))
                    .draw()
                    .map_err(|e| err(&e))?;
                for (row, pts) in &series {
                    let col = colour(row);
                    let width = if row == "auto" { 4 } else { 2 };
                    chart
                        .draw_series(LineSeries::new(pts.clone(), col.stroke_width(width)))
                        .map_err(|e| err(&e))?;
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))
                        .map_err(|e| err(&e))?;
                }
            }};
        }
        if c.log_y {
            let lo = if ymin.is_finite() {
                ymin / 1.5
            } else {
                ymax / 10.0
            };
            let chart = builder
                .build_cartesian_2d(x_range(), LogAxis::new(lo, ymax * 1.5))
                .map_err(|e| err(&e))?;
            plot!(chart);
        } else {
            let chart = builder
                .build_cartesian_2d(x_range(), 0.0..ymax * 1.15)
                .map_err(|e| err(&e))?;
            plot!(chart);
        }
        // The legend, right of the plot (never over a line).
        let x = (WIDTH - LEGEND_W) as i32 + 8;
        for (i, (row, _)) in series.iter().enumerate() {
            let y = 70 + 26 * i as i32;
            let col = colour(row);
            let width = if row == "auto" { 4 } else { 2 };
            root.draw(&PathElement::new(
                vec![(x, y), (x + 28, y)],
                col.stroke_width(width),
            ))
            .map_err(|e| err(&e))?;
            root.draw(&Text::new(
                row.clone(),
                (x + 36, y - 11),
                ("sans-serif", 17).into_font(),
            ))
            .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(out)
}

fn charts(s: &ScenarioResult) -> [Chart; 2] {
    let t = s.scenario.title();
    [
        Chart {
            suffix: "throughput",
            title: format!("{t}: throughput"),
            y_desc: "GB/s (median)",
            log_y: false,
            value: |f| f.throughput.median,
        },
        Chart {
            suffix: "cpu",
            title: format!("{t}: {} CPU per GB", s.scenario.engine_side()),
            y_desc: "CPU seconds per GB, user + system (log)",
            log_y: true,
            value: |f| f.engine_cpu.total.median,
        },
    ]
}

impl Exporter for Svg {
    fn format(&self) -> &'static str {
        "svg"
    }

    fn render(&self, result: &BenchResult) -> Result<Vec<Output>, String> {
        let mut out = Vec::new();
        for s in &result.scenarios {
            for c in charts(s) {
                out.push(Output {
                    name: format!("{}-{}.svg", s.scenario.name(), c.suffix),
                    contents: draw(s, &c)?,
                });
            }
        }
        Ok(out)
    }
}
