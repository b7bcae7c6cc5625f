//! Tests for truncation (to be written).
