//! Tests for fallback (to be written).
