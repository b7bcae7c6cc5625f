//! Tests for mmap (to be written).
