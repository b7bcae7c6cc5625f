//! Tests for msg_zerocopy (to be written).
