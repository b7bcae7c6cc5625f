//! Helpers for running the `zcopy` binary.

#![allow(dead_code)]

use assert_cmd::Command;

/// `zcopy` with the given arguments, logs quiet.
pub fn zcopy(args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("zcopy").unwrap();
    cmd.args(args).env_remove("RUST_LOG");
    cmd
}

/// Runs `cmd`, which must succeed, and returns what it printed on stdout.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).expect("UTF-8 on stdout")
}

/// Deterministic bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 32) as u8
                ^ seed
        })
        .collect()
}

/// Names in `dir` that look like our temporary files.
pub fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".zcopy-"))
        .collect()
}

#[path = "../../../../tests/support/tool.rs"]
mod tool_support;
pub use tool_support::tool;
