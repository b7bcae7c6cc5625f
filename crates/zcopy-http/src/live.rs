//! What a reload swaps: the site (settings and root) and the access log, shared by
//! every worker through one cell. A worker checks the cell's generation once per loop
//! turn (one relaxed atomic load) and takes the new value when it changed; responses
//! already in flight keep what they started with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::access_log::AccessLogger;
use crate::handler::Site;

/// The settings requests are served under.
#[derive(Debug)]
pub struct Live {
    /// The site: configuration and the open root.
    pub site: Arc<Site>,
    /// The server's settings these were made from.
    pub config: Arc<crate::config::Config>,
    /// The access log, if any.
    pub log: Option<Arc<AccessLogger>>,
}

/// The current [`Live`] settings and a counter bumped on every swap.
#[derive(Debug)]
pub struct LiveCell {
    current: Mutex<Arc<Live>>,
    generation: AtomicU64,
}

impl LiveCell {
    /// A cell holding `live` (generation 0).
    pub fn new(live: Live) -> LiveCell {
        LiveCell {
            current: Mutex::new(Arc::new(live)),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation now (cheap: a relaxed load; compare with the one of [`Self::load`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The current settings and their generation.
    pub fn load(&self) -> (u64, Arc<Live>) {
        let cur = crate::lock(&self.current);
        (self.generation.load(Ordering::Relaxed), cur.clone())
    }

    /// Replaces the settings; workers pick them up on their next loop turn.
    pub fn store(&self, live: Live) {
        let mut cur = crate::lock(&self.current);
        *cur = Arc::new(live);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}
