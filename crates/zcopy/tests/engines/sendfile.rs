//! Tests for sendfile (to be written).
