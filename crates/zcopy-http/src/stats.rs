//! Counters of what the server does, kept per worker and summed when read. Each
//! worker is the only writer of its own counters, so a bump is a relaxed load and
//! store (no locked instruction, no line shared with another worker); a reader (the
//! metrics endpoint) sums every worker's values. Rendered in the Prometheus text
//! format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use zcopy::EngineKind;

/// Method labels: the two served, preflight, uploads, any other, and requests that
/// never parsed (in the order of the core's `proto::MethodClass`, which indexes them).
pub const METHODS: [&str; 6] = ["GET", "HEAD", "OPTIONS", "PUT", "other", "invalid"];
/// Upper bounds (seconds) of the request-duration histogram buckets.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

const REQUESTS: usize = 0; // METHODS × 5 status classes
const BODY_MEMORY: usize = REQUESTS + METHODS.len() * 5;
const BODY_ENGINE: usize = BODY_MEMORY + 1; // × EngineKind::ALL
const BY_REFERENCE: usize = BODY_ENGINE + EngineKind::ALL.len();
const COPIED: usize = BY_REFERENCE + 1;
const BODY_TLS: usize = COPIED + 1;
const ACCEPTED: usize = BODY_TLS + 1;
const OPEN: usize = ACCEPTED + 1;
const IDLE: usize = OPEN + 1;
const SHED: usize = IDLE + 1;
const REFUSED: usize = SHED + 1;
const LEASE_BREAKS: usize = REFUSED + 1;
const TRUNCATIONS: usize = LEASE_BREAKS + 1;
const CACHE_HITS: usize = TRUNCATIONS + 1;
const CACHE_MISSES: usize = CACHE_HITS + 1;
const CACHE_HELD: usize = CACHE_MISSES + 1;
const UPLOAD_COPY: usize = CACHE_HELD + 1;
const UPLOAD_TLS: usize = UPLOAD_COPY + 1;
const UPLOAD_ENGINE: usize = UPLOAD_TLS + 1; // × EngineKind::ALL
const UPLOAD_STEPS: usize = UPLOAD_ENGINE + EngineKind::ALL.len();
const RING_BUFS: usize = UPLOAD_STEPS + 1;
const RING_BUFS_PEAK: usize = RING_BUFS + 1;
const RING_RECV_BUFS: usize = RING_BUFS_PEAK + 1;
const RING_SPARE_BUFS: usize = RING_RECV_BUFS + 1;
const RING_FILE_SENDS: usize = RING_SPARE_BUFS + 1;
const CONN_BUFS: usize = RING_FILE_SENDS + 1;
const DURATION: usize = CONN_BUFS + 1; // BUCKETS + 1 (+Inf)
const DURATION_SUM_NS: usize = DURATION + BUCKETS.len() + 1;
const LEN: usize = DURATION_SUM_NS + 1;

/// One worker's counters (written by that worker only).
#[derive(Debug)]
pub struct WorkerStats {
    c: Box<[AtomicU64]>,
    /// Engine fallbacks by (engine, reason): rare, so a lock is fine.
    fallbacks: Mutex<Vec<(&'static str, String, u64)>>,
}

impl Default for WorkerStats {
    fn default() -> WorkerStats {
        WorkerStats {
            c: (0..LEN).map(|_| AtomicU64::new(0)).collect(),
            fallbacks: Mutex::new(Vec::new()),
        }
    }
}

impl WorkerStats {
    /// Adds `n` to counter `i` (single writer: load + store, no read-modify-write).
    fn add(&self, i: usize, n: u64) {
        let c = &self.c[i];
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    fn get(&self, i: usize) -> u64 {
        self.c[i].load(Ordering::Relaxed)
    }

    /// A response finished: its method label index, status and how long it took.
    pub fn response(&self, method: usize, status: u16, took: Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.add(REQUESTS + method.min(METHODS.len() - 1) * 5 + class, 1);
        if took.is_zero() {
            // Answered in the loop turn it was parsed in (the core's clock is the
            // turn's): the first bucket, and nothing to add to the sum.
            self.add(DURATION, 1);
            return;
        }
        let secs = took.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.add(DURATION + b, 1);
        self.add(
            DURATION_SUM_NS,
            took.as_nanos().min(u64::MAX as u128) as u64,
        );
    }

    /// Body bytes sent from memory (with the head, or a held file's).
    pub fn body_from_memory(&self, n: u64) {
        self.add(BODY_MEMORY, n);
        self.add(COPIED, n);
    }

    /// Body bytes an engine sent (`by_reference`: as page references).
    pub fn body_by_engine(&self, engine: Option<EngineKind>, n: u64, by_reference: bool) {
        if let Some(i) = engine.and_then(|e| EngineKind::ALL.iter().position(|&k| k == e)) {
            self.add(BODY_ENGINE + i, n);
        }
        self.add(if by_reference { BY_REFERENCE } else { COPIED }, n);
    }

    /// File body bytes read and encrypted in user space (HTTPS without kTLS).
    pub fn body_by_tls(&self, n: u64) {
        self.add(BODY_TLS, n);
        self.add(COPIED, n);
    }

    /// Upload body bytes an engine moved from the socket to the file.
    pub fn upload_by_engine(&self, engine: Option<EngineKind>, n: u64) {
        if let Some(i) = engine.and_then(|e| EngineKind::ALL.iter().position(|&k| k == e)) {
            self.add(UPLOAD_ENGINE + i, n);
        }
        self.add(UPLOAD_STEPS, 1);
    }

    /// Upload body bytes written to the file from the read buffer (`tls`: decrypted
    /// there; else plain bytes that came with the head, or read by io_uring).
    pub fn upload_copied(&self, tls: bool, n: u64) {
        self.add(if tls { UPLOAD_TLS } else { UPLOAD_COPY }, n);
        self.add(UPLOAD_STEPS, 1);
    }

    /// An engine gave up on a body and the next one took over.
    pub fn fallback(&self, engine: EngineKind, reason: &str) {
        let mut f = crate::lock(&self.fallbacks);
        match f
            .iter_mut()
            .find(|(e, r, _)| *e == engine.name() && r == reason)
        {
            Some(entry) => entry.2 += 1,
            None => f.push((engine.name(), reason.to_owned(), 1)),
        }
    }

    /// A connection was accepted.
    pub fn accepted(&self) {
        self.add(ACCEPTED, 1);
    }

    /// The worker's open and idle connections now.
    pub fn connections(&self, open: usize, idle: usize) {
        self.c[OPEN].store(open as u64, Ordering::Relaxed);
        self.c[IDLE].store(idle as u64, Ordering::Relaxed);
    }

    /// Bytes of send and read buffers the io_uring driver's operations in flight
    /// hold now, and the most they ever held at once.
    pub fn ring_buffers(&self, now: usize, peak: usize) {
        self.c[RING_BUFS].store(now as u64, Ordering::Relaxed);
        self.c[RING_BUFS_PEAK].store(peak as u64, Ordering::Relaxed);
    }

    /// Bytes of the io_uring driver's receive buffers whose pages are resident (in
    /// use or recently used), of its spare send and read buffers, and how many
    /// file-body send operations it has (sending, or kept for their pipe).
    pub fn ring_memory(&self, recv: usize, spare: usize, file_sends: usize) {
        self.c[RING_RECV_BUFS].store(recv as u64, Ordering::Relaxed);
        self.c[RING_SPARE_BUFS].store(spare as u64, Ordering::Relaxed);
        self.c[RING_FILE_SENDS].store(file_sends as u64, Ordering::Relaxed);
    }

    /// Bytes of buffer the worker's connections hold between operations (read
    /// buffers, head buffers, queues of received chunks), as of the last second.
    pub fn connection_buffers(&self, bytes: usize) {
        self.c[CONN_BUFS].store(bytes as u64, Ordering::Relaxed);
    }

    /// A connection was closed to make room for a new one.
    pub fn shed(&self) {
        self.add(SHED, 1);
    }

    /// A new connection was answered 503 (no room).
    pub fn refused(&self) {
        self.add(REFUSED, 1);
    }

    /// A file's read lease was broken mid-response.
    pub fn lease_break(&self) {
        self.add(LEASE_BREAKS, 1);
    }

    /// A file shrank mid-response (the response was cut short).
    pub fn truncation(&self) {
        self.add(TRUNCATIONS, 1);
    }

    /// The worker's file-cache totals so far.
    pub fn file_cache(&self, cache: &crate::cache::FileCache) {
        self.c[CACHE_HITS].store(cache.hits, Ordering::Relaxed);
        self.c[CACHE_MISSES].store(cache.misses, Ordering::Relaxed);
        self.c[CACHE_HELD].store(cache.held_hits, Ordering::Relaxed);
    }
}

/// Every worker's counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Every worker that ever ran (a retired one's counts still add up).
    workers: RwLock<Vec<Arc<WorkerStats>>>,
    /// The server's snapshot store, once it has one.
    snapshots: RwLock<Option<Arc<zcopy_site::snapshot::Store>>>,
}

impl ServerStats {
    /// Counters for `n` workers.
    pub fn new(n: usize) -> ServerStats {
        ServerStats {
            workers: RwLock::new((0..n).map(|_| Arc::new(WorkerStats::default())).collect()),
            snapshots: RwLock::new(None),
        }
    }

    /// The snapshot store whose counters [`ServerStats::render`] shows.
    pub fn set_snapshots(&self, store: Arc<zcopy_site::snapshot::Store>) {
        *self
            .snapshots
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(store);
    }

    /// Worker `i`'s counters (made for a worker started after the others).
    pub fn worker(&self, i: usize) -> Arc<WorkerStats> {
        let mut workers = self.workers.write().unwrap_or_else(PoisonError::into_inner);
        while workers.len() <= i {
            workers.push(Arc::new(WorkerStats::default()));
        }
        workers[i].clone()
    }

    fn all(&self) -> Vec<Arc<WorkerStats>> {
        self.workers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn sum(&self, i: usize) -> u64 {
        self.all().iter().map(|w| w.get(i)).sum()
    }

    /// All counters summed over the workers, in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8192);
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP zcopy_{name} {help}\n# TYPE zcopy_{name} {kind}");
        };
        head(
            &mut o,
            "requests_total",
            "counter",
            "Responses finished, by request method and status class.",
        );
        for (m, method) in METHODS.iter().enumerate() {
            for class in 0..5 {
                let v = self.sum(REQUESTS + m * 5 + class);
                let _ = writeln!(
                    o,
                    "zcopy_requests_total{{method=\"{method}\",status=\"{}xx\"}} {v}",
                    class + 1
                );
            }
        }
        head(
            &mut o,
            "body_bytes_total",
            "counter",
            "Response body bytes sent, by engine (memory: from memory, with the head or from a \
             held file; tls: read and encrypted in user space).",
        );
        let _ = writeln!(
            o,
            "zcopy_body_bytes_total{{engine=\"memory\"}} {}",
            self.sum(BODY_MEMORY)
        );
        for (i, e) in EngineKind::ALL.iter().enumerate() {
            let _ = writeln!(
                o,
                "zcopy_body_bytes_total{{engine=\"{}\"}} {}",
                e.name(),
                self.sum(BODY_ENGINE + i)
            );
        }
        let _ = writeln!(
            o,
            "zcopy_body_bytes_total{{engine=\"tls\"}} {}",
            self.sum(BODY_TLS)
        );
        head(
            &mut o,
            "upload_bytes_total",
            "counter",
            "Upload (request) body bytes written to their file, by engine (copy: from the \
             read buffer, the bytes that came with the head or every byte on io_uring; tls: \
             decrypted in user space).",
        );
        for (name, i) in [("copy", UPLOAD_COPY), ("tls", UPLOAD_TLS)] {
            let _ = writeln!(
                o,
                "zcopy_upload_bytes_total{{engine=\"{name}\"}} {}",
                self.sum(i)
            );
        }
        for (i, e) in EngineKind::ALL.iter().enumerate() {
            let _ = writeln!(
                o,
                "zcopy_upload_bytes_total{{engine=\"{}\"}} {}",
                e.name(),
                self.sum(UPLOAD_ENGINE + i)
            );
        }
        head(
            &mut o,
            "upload_steps_total",
            "counter",
            "Steps that moved upload body bytes to their file: an engine's step (socket \
             -> file), or one write of received or decrypted bytes (bytes per step: \
             upload_bytes_total over this).",
        );
        let _ = writeln!(o, "zcopy_upload_steps_total {}", self.sum(UPLOAD_STEPS));
        head(
            &mut o,
            "body_bytes_by_reference_total",
            "counter",
            "Body bytes queued as page-cache references (sendfile, splice).",
        );
        let _ = writeln!(
            o,
            "zcopy_body_bytes_by_reference_total {}",
            self.sum(BY_REFERENCE)
        );
        if let Some(store) = &*self
            .snapshots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
        {
            use std::sync::atomic::Ordering::Relaxed;
            let c = &store.counters;
            for (name, kind, help, v) in [
                (
                    "snapshot_hits_total",
                    "counter",
                    "Snapshot lookups that found one.",
                    c.hits.load(Relaxed),
                ),
                (
                    "snapshot_misses_total",
                    "counter",
                    "Snapshot lookups that found none.",
                    c.misses.load(Relaxed),
                ),
                (
                    "snapshot_evictions_total",
                    "counter",
                    "Snapshots dropped to stay within --snapshot-memory.",
                    c.evictions.load(Relaxed),
                ),
                (
                    "snapshot_invalidations_total",
                    "counter",
                    "Snapshots dropped because their file changed.",
                    c.invalidations.load(Relaxed),
                ),
                (
                    "snapshot_bytes",
                    "gauge",
                    "Bytes the sealed snapshots hold.",
                    c.bytes.load(Relaxed),
                ),
                (
                    "snapshot_budget_bytes",
                    "gauge",
                    "The --snapshot-memory budget.",
                    store.budget(),
                ),
            ] {
                head(&mut o, name, kind, help);
                let _ = writeln!(o, "zcopy_{name} {v}");
            }
        }
        head(
            &mut o,
            "body_bytes_copied_total",
            "counter",
            "Body bytes copied at send time.",
        );
        let _ = writeln!(o, "zcopy_body_bytes_copied_total {}", self.sum(COPIED));
        head(
            &mut o,
            "engine_fallbacks_total",
            "counter",
            "Times an engine gave up on a body and the next took over, by engine and reason.",
        );
        let mut fell: Vec<(&str, String, u64)> = Vec::new();
        for w in &self.all() {
            for (e, r, n) in w
                .fallbacks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                match fell.iter_mut().find(|(fe, fr, _)| fe == e && fr == r) {
                    Some(x) => x.2 += n,
                    None => fell.push((e, r.clone(), *n)),
                }
            }
        }
        for (e, r, n) in fell {
            let _ = writeln!(
                o,
                "zcopy_engine_fallbacks_total{{engine=\"{e}\",reason=\"{}\"}} {n}",
                label(&r)
            );
        }
        let simple = [
            (
                "connections_accepted_total",
                "counter",
                "Connections accepted.",
                ACCEPTED,
            ),
            ("connections_open", "gauge", "Connections open now.", OPEN),
            (
                "connections_idle",
                "gauge",
                "Keep-alive connections waiting for a request (as of the last second).",
                IDLE,
            ),
            (
                "ring_buffer_bytes",
                "gauge",
                "Bytes of send and read buffers the io_uring driver's operations in flight hold (0 on epoll).",
                RING_BUFS,
            ),
            (
                "ring_buffer_peak_bytes",
                "gauge",
                "The most bytes of send and read buffers the io_uring driver's operations held at once, summed over workers (0 on epoll).",
                RING_BUFS_PEAK,
            ),
            (
                "ring_recv_buffer_bytes",
                "gauge",
                "Bytes of the io_uring driver's provided receive buffers that may be resident (in use, or used since the last sweep), summed over workers (0 on epoll).",
                RING_RECV_BUFS,
            ),
            (
                "ring_spare_buffer_bytes",
                "gauge",
                "Bytes of spare send and read buffers the io_uring driver keeps between operations (freed when unused for a second), summed over workers (0 on epoll).",
                RING_SPARE_BUFS,
            ),
            (
                "ring_file_sends",
                "gauge",
                "File-body send operations of the io_uring driver: sending, or kept between bodies for their pipe, summed over workers (0 on epoll).",
                RING_FILE_SENDS,
            ),
            (
                "connection_buffer_bytes",
                "gauge",
                "Bytes of read and head buffers (and queued received chunks' bookkeeping) the connections hold, summed over workers (as of the last second).",
                CONN_BUFS,
            ),
            (
                "connections_shed_total",
                "counter",
                "Connections closed to make room at the connection limit.",
                SHED,
            ),
            (
                "connections_refused_total",
                "counter",
                "Connections answered 503 at the connection limit.",
                REFUSED,
            ),
            (
                "lease_breaks_total",
                "counter",
                "Responses stopped because another process opened their file for writing.",
                LEASE_BREAKS,
            ),
            (
                "truncations_total",
                "counter",
                "Responses cut short because their file shrank mid-send.",
                TRUNCATIONS,
            ),
            (
                "file_cache_hits_total",
                "counter",
                "Small-file cache hits (as of the last second).",
                CACHE_HITS,
            ),
            (
                "file_cache_misses_total",
                "counter",
                "Small-file cache misses (as of the last second).",
                CACHE_MISSES,
            ),
            (
                "file_cache_held_hits_total",
                "counter",
                "Small-file cache hits answered from memory, without a system call (as of \
                 the last second).",
                CACHE_HELD,
            ),
        ];
        for (name, kind, help, i) in simple {
            head(&mut o, name, kind, help);
            let _ = writeln!(o, "zcopy_{name} {}", self.sum(i));
        }
        head(
            &mut o,
            "request_duration_seconds",
            "histogram",
            "From request parsed to last response byte handed to the kernel (loop-turn resolution).",
        );
        let mut cum = 0;
        for (b, le) in BUCKETS.iter().enumerate() {
            cum += self.sum(DURATION + b);
            let _ = writeln!(
                o,
                "zcopy_request_duration_seconds_bucket{{le=\"{le}\"}} {cum}"
            );
        }
        cum += self.sum(DURATION + BUCKETS.len());
        let _ = writeln!(
            o,
            "zcopy_request_duration_seconds_bucket{{le=\"+Inf\"}} {cum}"
        );
        let sum = self.sum(DURATION_SUM_NS) as f64 / 1e9;
        let _ = writeln!(o, "zcopy_request_duration_seconds_sum {sum}");
        let _ = writeln!(o, "zcopy_request_duration_seconds_count {cum}");
        o
    }
}

/// A label value: `\`, `"` and newlines escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_summed_and_rendered() {
        let s = ServerStats::new(2);
        s.worker(0).response(0, 200, Duration::from_micros(300));
        s.worker(1).response(0, 204, Duration::from_millis(2));
        s.worker(1).response(5, 400, Duration::from_secs(60));
        s.worker(0)
            .body_by_engine(Some(EngineKind::Sendfile), 1000, true);
        s.worker(1).body_from_memory(24);
        s.worker(1).body_by_tls(7);
        s.worker(0).upload_by_engine(Some(EngineKind::Splice), 900);
        s.worker(1).upload_by_engine(Some(EngineKind::Splice), 100);
        s.worker(1).upload_copied(false, 5);
        s.worker(1).response(3, 201, Duration::from_micros(300));
        s.worker(0)
            .fallback(EngineKind::Splice, "Invalid argument \"x\"");
        s.worker(1)
            .fallback(EngineKind::Splice, "Invalid argument \"x\"");
        s.worker(0).connections(3, 1);
        s.worker(1).connections(2, 2);
        let text = s.render();
        for want in [
            "zcopy_requests_total{method=\"GET\",status=\"2xx\"} 2",
            "zcopy_requests_total{method=\"invalid\",status=\"4xx\"} 1",
            "zcopy_body_bytes_total{engine=\"sendfile\"} 1000",
            "zcopy_body_bytes_total{engine=\"memory\"} 24",
            "zcopy_body_bytes_total{engine=\"tls\"} 7",
            "zcopy_body_bytes_by_reference_total 1000",
            "zcopy_body_bytes_copied_total 31",
            "zcopy_upload_bytes_total{engine=\"splice\"} 1000",
            "zcopy_upload_bytes_total{engine=\"copy\"} 5",
            "zcopy_upload_bytes_total{engine=\"tls\"} 0",
            "zcopy_requests_total{method=\"PUT\",status=\"2xx\"} 1",
            "zcopy_engine_fallbacks_total{engine=\"splice\",reason=\"Invalid argument \\\"x\\\"\"} 2",
            "zcopy_connections_open 5",
            "zcopy_connections_idle 3",
            "zcopy_request_duration_seconds_bucket{le=\"0.0005\"} 2",
            "zcopy_request_duration_seconds_bucket{le=\"0.0025\"} 3",
            "zcopy_request_duration_seconds_bucket{le=\"30\"} 3",
            "zcopy_request_duration_seconds_bucket{le=\"+Inf\"} 4",
            "zcopy_request_duration_seconds_count 4",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }

    #[test]
    fn a_response_that_took_no_time_is_in_the_first_bucket() {
        let s = ServerStats::new(1);
        s.worker(0).response(0, 200, Duration::ZERO);
        s.worker(0).response(1, 304, Duration::ZERO);
        s.worker(0).response(0, 200, Duration::from_micros(1));
        s.worker(0).response(0, 200, Duration::from_millis(1));
        let text = s.render();
        for want in [
            "zcopy_requests_total{method=\"GET\",status=\"2xx\"} 3",
            "zcopy_requests_total{method=\"HEAD\",status=\"3xx\"} 1",
            "zcopy_request_duration_seconds_bucket{le=\"0.0005\"} 3\n",
            "zcopy_request_duration_seconds_bucket{le=\"0.001\"} 4\n",
            "zcopy_request_duration_seconds_sum 0.001001\n",
            "zcopy_request_duration_seconds_count 4\n",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
