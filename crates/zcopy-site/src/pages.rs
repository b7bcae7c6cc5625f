//! Memory held by bodies the server makes (listing pages, archive headers and member
//! lists), counted for all workers together: a client that asks for many and reads
//! nothing holds at most [`GENERATED_MAX`] bytes of them, whatever its connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of generated bodies held at once, all workers together (beyond: 503).
pub const GENERATED_MAX: usize = 64 << 20;
/// Generated bodies up to this size leave with the head and are not counted (as small
/// files do: the server driver's `SMALL_BODY`).
pub const INLINE_MAX: usize = 16 * 1024;
/// Most bytes one listing page may hold (for the check before it is built).
pub const PAGE_MAX: usize = crate::listing::MAX_LISTING * 512;
/// Most bytes one archive plan may hold (for the check before it is built).
pub const PLAN_MAX: usize = crate::archive::MAX_ENTRIES * 1280;

/// A count of bytes held, shared by the workers of one site.
#[derive(Debug)]
pub struct MemBudget {
    used: AtomicUsize,
    max: usize,
}

impl MemBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<MemBudget> {
        Arc::new(MemBudget {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes `n` bytes, or `None` when they don't fit.
    pub fn take(self: &Arc<MemBudget>, n: usize) -> Option<Ticket> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.max)
            })
            .ok()?;
        Some(Ticket {
            budget: self.clone(),
            n,
        })
    }

    /// Whether `n` more bytes would fit now (checked before an expensive build that
    /// may need that much; the build then takes what it really holds).
    pub fn room(&self, n: usize) -> bool {
        self.used().saturating_add(n) <= self.max
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Bytes taken from a [`MemBudget`], given back when dropped (with the body).
#[derive(Debug)]
pub struct Ticket {
    budget: Arc<MemBudget>,
    n: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_give_back_what_they_took() {
        let b = MemBudget::new(100);
        let t1 = b.take(60).unwrap();
        assert!(b.take(41).is_none());
        let t2 = b.take(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(t1);
        assert_eq!(b.used(), 40);
        drop(t2);
        assert_eq!(b.used(), 0);
    }
}
