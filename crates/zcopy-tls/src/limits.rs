//! Limits on handshakes the driver enforces: plain values, no clocks or sockets.

use std::time::Duration;

/// Handshake limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection that has not finished its handshake this long after accept
    /// is closed (see [`crate::Session::handshake_deadline`]).
    pub handshake_timeout: Duration,
    /// Handshakes one worker runs at once (see [`HandshakeSlots`]).
    pub max_handshakes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 256,
        }
    }
}

/// One worker's count of connections still in their handshake.
///
/// The driver takes a slot when it accepts on a TLS listener and gives it back
/// when the handshake is done ([`crate::Fed::handshake_done`]) or the connection
/// ends before that. While [`HandshakeSlots::full`], a new TLS connection takes the
/// slot of the oldest unfinished handshake, which is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeSlots {
    busy: usize,
    max: usize,
}

impl HandshakeSlots {
    /// Slots for `limits.max_handshakes` handshakes.
    pub fn new(limits: &Limits) -> Self {
        HandshakeSlots {
            busy: 0,
            max: limits.max_handshakes.max(1),
        }
    }

    /// Take a slot; `false` when all are busy.
    pub fn take(&mut self) -> bool {
        if self.busy >= self.max {
            return false;
        }
        self.busy += 1;
        true
    }

    /// Give a slot back.
    pub fn give_back(&mut self) {
        debug_assert!(self.busy > 0, "slot given back twice");
        self.busy = self.busy.saturating_sub(1);
    }

    /// No slot is free.
    pub fn full(&self) -> bool {
        self.busy >= self.max
    }

    /// Slots taken.
    pub fn busy(&self) -> usize {
        self.busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_and_free() {
        let mut s = HandshakeSlots::new(&Limits {
            max_handshakes: 2,
            ..Limits::default()
        });
        assert!(s.take() && s.take());
        assert!(s.full());
        assert!(!s.take());
        s.give_back();
        assert!(!s.full());
        assert!(s.take());
        assert_eq!(s.busy(), 2);
    }
}
