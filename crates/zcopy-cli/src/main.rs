//! The `zcopy` command.
#![forbid(unsafe_code)]

fn main() {}
