//! Tests for vmsplice (to be written).
