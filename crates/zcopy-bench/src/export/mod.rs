//! Exporters: the same [`BenchResult`] as Markdown tables, JSON or SVG charts, all
//! behind [`Exporter`].

use std::io;
use std::path::Path;

use crate::report::BenchResult;

pub mod json;
pub mod markdown;
pub mod svg;

pub use json::Json;
pub use markdown::Markdown;
pub use svg::Svg;

/// One rendered file: a suggested file name and its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// File name (no directory), e.g. `file-tcp-throughput.svg`.
    pub name: String,
    /// The text.
    pub contents: String,
}

/// Renders a bench result into one or more text files.
pub trait Exporter {
    /// What this exporter produces, e.g. `markdown`.
    fn format(&self) -> &'static str;

    /// Renders `result`.
    fn render(&self, result: &BenchResult) -> Result<Vec<Output>, String>;
}

/// Writes every output into `dir` (created if needed).
pub fn write_all(outputs: &[Output], dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for o in outputs {
        std::fs::write(dir.join(&o.name), &o.contents)?;
    }
    Ok(())
}

/// A number for tables: three significant digits or so, `k`/`M` for large ones.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a >= 10e6 {
        format!("{:.0}M", x / 1e6)
    } else if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 10e3 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a == 0.0 {
        "0".into()
    } else if a >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_num;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(2.3456), "2.35");
        assert_eq!(fmt_num(0.1234), "0.123");
        assert_eq!(fmt_num(12345.0), "12k");
        assert_eq!(fmt_num(2_500_000.0), "2.5M");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(0.00123), "1.2e-3");
        assert_eq!(fmt_num(f64::NAN), "-");
    }
}
