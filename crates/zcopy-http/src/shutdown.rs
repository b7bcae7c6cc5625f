//! The shutdown flag and the wakers of the running workers.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use mio::Waker;

use crate::lock;

#[derive(Debug)]
pub(crate) struct ShutdownInner {
    pub(crate) flag: AtomicBool,
    /// The running workers' wakers.
    pub(crate) wakers: Mutex<Vec<Arc<Waker>>>,
}

impl ShutdownInner {
    /// Wakes every running worker.
    pub(crate) fn wake_all(&self) {
        for w in lock(&self.wakers).iter() {
            let _ = w.wake();
        }
    }
}
