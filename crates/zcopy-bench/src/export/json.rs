//! JSON export: every figure with its median, min, max and MAD (no serde; a small
//! writer is enough).

use std::fmt::Write;

use super::{Exporter, Output};
use crate::report::{BenchResult, CpuPerGb, Figures};
use crate::stats::Summary;

/// Renders `bench.json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

/// A JSON value.
#[derive(Clone, Debug)]
enum J {
    Null,
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }

    fn write(&self, out: &mut String, indent: usize) {
        let pad = |n| "  ".repeat(n);
        match self {
            J::Null => out.push_str("null"),
            J::Num(x) if x.is_finite() => {
                let _ = write!(out, "{x}");
            }
            J::Num(_) => out.push_str("null"),
            J::Str(s) => quote(out, s),
            J::Arr(v) if v.is_empty() => out.push_str("[]"),
            J::Arr(v) => {
                out.push_str("[\n");
                for (i, x) in v.iter().enumerate() {
                    out.push_str(&pad(indent + 1));
                    x.write(out, indent + 1);
                    out.push_str(if i + 1 < v.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push(']');
            }
            J::Obj(v) => {
                out.push_str("{\n");
                for (i, (k, x)) in v.iter().enumerate() {
                    out.push_str(&pad(indent + 1));
                    quote(out, k);
                    out.push_str(": ");
                    x.write(out, indent + 1);
                    out.push_str(if i + 1 < v.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push('}');
            }
        }
    }
}

fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn summary(s: &Summary) -> J {
    J::Obj(vec![
        ("median", J::Num(s.median)),
        ("min", J::Num(s.min)),
        ("max", J::Num(s.max)),
        ("mad", J::Num(s.mad)),
    ])
}

fn cpu(c: &CpuPerGb) -> J {
    J::Obj(vec![
        ("user_s_per_gb", summary(&c.user)),
        ("system_s_per_gb", summary(&c.system)),
        ("total_s_per_gb", summary(&c.total)),
        ("voluntary_switches_per_gb", summary(&c.voluntary_switches)),
        (
            "involuntary_switches_per_gb",
            summary(&c.involuntary_switches),
        ),
        ("page_faults_per_gb", summary(&c.faults)),
    ])
}

fn opt(x: Option<f64>) -> J {
    x.map_or(J::Null, J::Num)
}

fn figures(f: &Figures) -> J {
    J::Obj(vec![
        ("engine", J::s(&f.row)),
        ("ran", J::s(&f.ran)),
        ("size", J::Num(f.size as f64)),
        ("runs", J::Num(f.runs as f64)),
        ("transfers_per_run", J::Num(f.iters as f64)),
        ("throughput_gb_per_s", summary(&f.throughput)),
        ("seconds_per_transfer", summary(&f.seconds_per_transfer)),
        ("engine_cpu", cpu(&f.engine_cpu)),
        ("engine_thread_cpu_s_per_gb", summary(&f.engine_thread_cpu)),
        ("peer_cpu", f.peer_cpu.as_ref().map_or(J::Null, cpu)),
        ("syscalls_per_gb", summary(&f.syscalls)),
        ("seed_cpu_copies", J::s(f.seed_copies)),
        ("seed_switches", J::s(f.seed_switches)),
        ("throughput_vs_read_write", opt(f.throughput_vs_rw)),
        ("cpu_vs_read_write", opt(f.cpu_vs_rw)),
    ])
}

/// The whole result as a JSON document.
pub fn to_json(r: &BenchResult) -> String {
    let m = &r.meta;
    let meta = J::Obj(vec![
        ("version", J::s(&m.version)),
        ("date", J::s(&m.date)),
        ("kernel", J::s(&m.kernel)),
        ("cpu", J::s(&m.cpu)),
        ("cpus", J::Num(m.cpus as f64)),
        ("filesystem", J::s(&m.filesystem)),
        ("cache", J::s(&m.cache)),
        ("runs", J::Num(m.runs as f64)),
        ("warmup", J::s(if m.warmup { "yes" } else { "no" })),
        ("min_run_ms", J::Num(m.min_run_ms as f64)),
        ("gb", J::s("1e9 bytes")),
    ]);
    let scenarios = r
        .scenarios
        .iter()
        .map(|s| {
            J::Obj(vec![
                ("name", J::s(s.scenario.name())),
                ("title", J::s(s.scenario.title())),
                ("engine_side", J::s(s.scenario.engine_side())),
                ("peer", s.scenario.peer().map_or(J::Null, J::s)),
                (
                    "sizes",
                    J::Arr(s.sizes.iter().map(|&n| J::Num(n as f64)).collect()),
                ),
                ("results", J::Arr(s.figures.iter().map(figures).collect())),
                (
                    "skipped",
                    J::Arr(
                        s.skipped
                            .iter()
                            .map(|k| {
                                J::Obj(vec![
                                    ("engine", J::s(&k.row)),
                                    ("size", J::Num(k.size as f64)),
                                    ("why", J::s(&k.why)),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ])
        })
        .collect();
    let mut out = String::new();
    J::Obj(vec![("meta", meta), ("scenarios", J::Arr(scenarios))]).write(&mut out, 0);
    out.push('\n');
    out
}

impl Exporter for Json {
    fn format(&self) -> &'static str {
        "json"
    }

    fn render(&self, result: &BenchResult) -> Result<Vec<Output>, String> {
        Ok(vec![Output {
            name: "bench.json".into(),
            contents: to_json(result),
        }])
    }
}
