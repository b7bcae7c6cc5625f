//! Tests for splice (to be written).
