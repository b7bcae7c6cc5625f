//! Tests for copy_range (to be written).
