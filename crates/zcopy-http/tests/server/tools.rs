//! Real clients: curl and wget (skipped when not installed).

use std::process::Command;

use crate::util::*;

fn fixture() -> (Fixture, TestServer, u64) {
    let fx = Fixture::new();
    let len = (3 << 20) + 5;
    write_pattern(&fx.root().join("big.bin"), len);
    let srv = TestServer::start(&fx.root(), |_| {});
    (fx, srv, len)
}

#[test]
fn curl_downloads_resumes_and_ranges() {
    if !tool("curl", "--version") {
        return;
    }
    let (_fx, srv, len) = fixture();
    let out = tempfile::tempdir().unwrap();
    let url = srv.url("/big.bin");
    let ok = Command::new("curl")
        .args(["-sSf", "-O", &url])
        .current_dir(out.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let got = std::fs::read(out.path().join("big.bin")).unwrap();
    assert_eq!(got.len() as u64, len);
    assert_pattern(&got, 0, "curl -O");
    // Resume: keep the first 1 MiB + 3 and let curl fetch the rest.
    let part = out.path().join("part.bin");
    std::fs::write(&part, &got[..(1 << 20) + 3]).unwrap();
    let ok = Command::new("curl")
        .args(["-sSf", "-C", "-", "-o"])
        .arg(&part)
        .arg(&url)
        .status()
        .unwrap();
    assert!(ok.success());
    let resumed = std::fs::read(&part).unwrap();
    assert_eq!(resumed.len() as u64, len);
    assert_pattern(&resumed, 0, "curl -C -");
    // Ranges.
    let o = Command::new("curl")
        .args(["-sSf", "-r", "1000-1999", &url])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout.len(), 1000);
    assert_pattern(&o.stdout, 1000, "curl -r");
}

#[test]
fn wget_downloads_and_continues() {
    if !tool("wget", "--version") {
        return;
    }
    let (_fx, srv, len) = fixture();
    let out = tempfile::tempdir().unwrap();
    let url = srv.url("/big.bin");
    let dest = out.path().join("w.bin");
    let ok = Command::new("wget")
        .args(["-q", "-O"])
        .arg(&dest)
        .arg(&url)
        .status()
        .unwrap();
    assert!(ok.success());
    let got = std::fs::read(&dest).unwrap();
    assert_eq!(got.len() as u64, len);
    assert_pattern(&got, 0, "wget");
    std::fs::write(out.path().join("big.bin"), &got[..12345]).unwrap();
    let ok = Command::new("wget")
        .args(["-q", "-c", &url])
        .current_dir(out.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let resumed = std::fs::read(out.path().join("big.bin")).unwrap();
    assert_eq!(resumed.len() as u64, len);
    assert_pattern(&resumed, 0, "wget -c");
}
