//! Tests for tee (to be written).
