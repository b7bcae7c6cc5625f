//! Tests for direct (to be written).
