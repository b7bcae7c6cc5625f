//! Markdown export: per scenario, a throughput table and a CPU table (rows = engines,
//! columns = sizes), then every figure in long format.

use std::fmt::Write;

use super::{Exporter, Output, fmt_num};
use crate::fmt_size;
use crate::report::{BenchResult, CpuPerGb, Figures, ScenarioResult};

/// Renders `bench.md`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Markdown;

fn ratio(r: Option<f64>) -> String {
    r.map_or(String::new(), |r| format!(" ({}×)", fmt_num(r)))
}

fn usr_sys(c: &CpuPerGb) -> String {
    format!("{} / {}", fmt_num(c.user.median), fmt_num(c.system.median))
}

fn summary_table(
    out: &mut String,
    s: &ScenarioResult,
    heading: &str,
    with_seeds: bool,
    cell: &dyn Fn(&Figures) -> String,
) {
    let _ = writeln!(out, "**{heading}**\n");
    let mut head = String::from("| engine |");
    let mut rule = String::from("|---|");
    if with_seeds {
        head.push_str(" CPU copies (seeds) | switches (seeds) |");
        rule.push_str("---|---|");
    }
    for &size in &s.sizes {
        let _ = write!(head, " {} |", fmt_size(size));
        rule.push_str("--:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for row in s.rows() {
        let mut line = format!("| {row} |");
        if with_seeds {
            let f = s.figures.iter().find(|f| f.row == row);
            let (c, w) = f.map_or(("", ""), |f| (f.seed_copies, f.seed_switches));
            let _ = write!(line, " {c} | {w} |");
        }
        for &size in &s.sizes {
            let c = s.get(&row, size).map_or("-".to_string(), cell);
            let _ = write!(line, " {c} |");
        }
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
}

fn scenario(out: &mut String, s: &ScenarioResult) {
    let scn = s.scenario;
    let _ = writeln!(out, "## {} (`{}`)\n", scn.title(), scn.name());
    let peer = scn
        .peer()
        .map_or(String::new(), |p| format!("; peer thread: {p}"));
    let _ = writeln!(
        out,
        "Engine under test: the {}{peer}. Medians; ratios are to read-write at the same size.\n",
        scn.engine_side()
    );
    summary_table(out, s, "Throughput, GB/s (× read-write)", true, &|f| {
        format!(
            "{}{}",
            fmt_num(f.throughput.median),
            ratio(f.throughput_vs_rw)
        )
    });
    summary_table(
        out,
        s,
        &format!(
            "{} CPU, seconds per GB, user + system (× read-write)",
            capitalise(scn.engine_side())
        ),
        false,
        &|f| {
            format!(
                "{}{}",
                fmt_num(f.engine_cpu.total.median),
                ratio(f.cpu_vs_rw)
            )
        },
    );

    let peer_col = scn.peer().map(|_| {
        if scn.engine_side() == "sender" {
            "receiver"
        } else {
            "sender"
        }
    });
    let _ = writeln!(out, "<details><summary>All figures</summary>\n");
    let mut head = format!(
        "| size | engine | ran | GB/s (min–max) | × rw | {0} usr / sys s/GB | {0} thread s/GB |",
        scn.engine_side()
    );
    if let Some(p) = peer_col {
        let _ = write!(head, " {p} usr / sys s/GB |");
    }
    head.push_str(" × rw CPU | vol / invol cs/GB | syscalls/GB | faults/GB | runs × transfers |");
    let cols = head.matches('|').count() - 1;
    let rule: String = "|".to_string() + &"---|".repeat(cols);
    let _ = writeln!(out, "{head}\n{rule}");
    for &size in &s.sizes {
        for f in s.figures.iter().filter(|f| f.size == size) {
            let t = &f.throughput;
            let mut line = format!(
                "| {} | {} | {} | {} ({}–{}) | {} | {} | {} |",
                fmt_size(size),
                f.row,
                f.ran,
                fmt_num(t.median),
                fmt_num(t.min),
                fmt_num(t.max),
                f.throughput_vs_rw.map_or("-".into(), fmt_num),
                usr_sys(&f.engine_cpu),
                fmt_num(f.engine_thread_cpu.median),
            );
            if peer_col.is_some() {
                let p = f.peer_cpu.as_ref().map_or("-".into(), usr_sys);
                let _ = write!(line, " {p} |");
            }
            let c = &f.engine_cpu;
            let _ = writeln!(
                line,
                " {} | {} / {} | {} | {} | {} × {} |",
                f.cpu_vs_rw.map_or("-".into(), fmt_num),
                fmt_num(c.voluntary_switches.median),
                fmt_num(c.involuntary_switches.median),
                fmt_num(f.syscalls.median),
                fmt_num(c.faults.median),
                f.runs,
                f.iters
            );
            out.push_str(&line);
        }
    }
    out.push_str("\n</details>\n\n");
    if !s.skipped.is_empty() {
        out.push_str("Not measured:\n\n");
        for k in &s.skipped {
            let size = if k.size == 0 {
                "all sizes".to_string()
            } else {
                fmt_size(k.size)
            };
            let _ = writeln!(out, "- {} at {size}: {}", k.row, k.why);
        }
        out.push('\n');
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or(String::new(), |f| {
        f.to_uppercase().collect::<String>() + c.as_str()
    })
}

/// The whole result as Markdown.
pub fn to_markdown(r: &BenchResult) -> String {
    let m = &r.meta;
    let mut out = String::from("# zcopy bench\n\n");
    let _ = writeln!(
        out,
        "{} · {} · {} CPUs · {} · page cache {} · {} runs{} · runs last ≥ {} ms (small sizes repeat the transfer) · zcopy {} · {}\n",
        m.kernel,
        if m.cpu.is_empty() { "?" } else { &m.cpu },
        m.cpus,
        m.filesystem,
        m.cache,
        m.runs,
        if m.warmup { " after a warm-up" } else { "" },
        m.min_run_ms,
        m.version,
        m.date
    );
    out.push_str(
        "GB = 10⁹ bytes; sizes are binary (1M = 2²⁰ bytes). CPU is getrusage(RUSAGE_THREAD) \
         deltas: the peer (receiver or sender) is its own thread; the engine side is the \
         process minus the peer, so it includes kernel workers of the process such as \
         io_uring's io-wq threads (*thread* is the engine's own thread alone). Syscalls \
         are the engine's own count; switches and faults are per GB, engine side. The \
         kernel splits CPU time into user and system by sampling at clock ticks, so for \
         short runs trust the total more than the split. `auto` is the \
         default plan with fallback; *ran* says what it picked.\n\n",
    );
    for s in &r.scenarios {
        scenario(&mut out, s);
    }
    out
}

impl Exporter for Markdown {
    fn format(&self) -> &'static str {
        "markdown"
    }

    fn render(&self, result: &BenchResult) -> Result<Vec<Output>, String> {
        Ok(vec![Output {
            name: "bench.md".into(),
            contents: to_markdown(result),
        }])
    }
}
