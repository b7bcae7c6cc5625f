//! Tests for uring (to be written).
