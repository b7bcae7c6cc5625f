//! Progress bars for long transfers: shown only when stderr is a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// A per-file bar plus, when the total is known, an overall bar.
#[derive(Debug)]
pub struct Bars {
    multi: MultiProgress,
    total: Option<ProgressBar>,
    file: Mutex<Option<(ProgressBar, u64)>>,
    done_before: Mutex<u64>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
}

impl Bars {
    /// Bars if stderr is a terminal (and not `quiet`), else `None`.
    pub fn new(total: Option<u64>, quiet: bool) -> Option<Bars> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = MultiProgress::new();
        let total = total.map(|t| {
            let bar = multi.add(ProgressBar::new(t));
            bar.set_style(style(
                "total [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            ));
            bar
        });
        Some(Bars {
            multi,
            total,
            file: Mutex::new(None),
            done_before: Mutex::new(0),
        })
    }

    /// Removes the bars.
    pub fn finish(&self) {
        if let Some((bar, _)) = self.file.lock().expect("lock").take() {
            bar.finish_and_clear();
        }
        if let Some(t) = &self.total {
            t.finish_and_clear();
        }
    }
}

/// "3 files, 1048576 bytes (0 already there) in 0.12s, 8.7 MB/s via sendfile": the
/// summary both ends of a send print.
pub fn summary(
    files: u64,
    bytes: u64,
    skipped: u64,
    elapsed: std::time::Duration,
    engines: &[String],
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let engines = if engines.is_empty() {
        "-".to_string()
    } else {
        engines.join(", ")
    };
    format!(
        "{files} files, {bytes} bytes ({skipped} already there) in {secs:.2}s, {:.1} MB/s via {engines}",
        bytes as f64 / secs / 1e6
    )
}

/// Runs `f` with progress bars when stderr is a terminal (and not `quiet`), with no
/// display otherwise, and removes the bars afterwards.
pub fn with_bars<T>(
    total: Option<u64>,
    quiet: bool,
    f: impl FnOnce(&dyn zcopy_net::recv::Progress) -> T,
) -> T {
    match Bars::new(total, quiet) {
        Some(bars) => {
            let result = f(&bars);
            bars.finish();
            result
        }
        None => f(&zcopy_net::recv::Quiet),
    }
}

impl zcopy_net::recv::Progress for Bars {
    fn file_start(&self, path: &str, size: u64, offset: u64) {
        let bar = self.multi.insert(0, ProgressBar::new(size));
        bar.set_style(style(
            "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
        ));
        bar.set_message(path.to_string());
        bar.set_position(offset);
        *self.file.lock().expect("lock") = Some((bar, size));
    }

    fn file_progress(&self, done: u64) {
        if let Some((bar, _)) = &*self.file.lock().expect("lock") {
            bar.set_position(done);
        }
        if let Some(t) = &self.total {
            t.set_position(*self.done_before.lock().expect("lock") + done);
        }
    }

    fn file_done(&self) {
        if let Some((bar, size)) = self.file.lock().expect("lock").take() {
            bar.finish_and_clear();
            *self.done_before.lock().expect("lock") += size;
        }
    }
}
