//! `zcopy serve --config FILE`: the file's keys and rules apply, flags override it,
//! mistakes are reported with file:line:column and exit 2, `--check-config` prints
//! the effective configuration.

use std::path::Path;
use std::process::Command;

use super::serve::{bin, signal, start};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn head(addr: &str, path: &str, name: &str) -> Option<String> {
    let resp = ureq::get(&format!("http://{addr}{path}")).call().unwrap();
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[test]
fn file_rules_apply_and_flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("assets")).unwrap();
    std::fs::write(www.join("assets/app.js"), b"js").unwrap();
    std::fs::write(www.join("index.html"), b"home").unwrap();
    let cfg = write(
        dir.path(),
        "z.toml",
        "header = [\"X-Site: file\"]\ncache-control = \"no-store\"\n\
         [[rule]]\nglob = \"assets/**\"\ncache-control = \"max-age=3600\"\n\
         header = [\"X-Asset: yes\"]\n",
    );
    let (mut child, addr) = start(&www, &[], &["--config", &cfg, "--header", "X-Site: flag"]);
    assert_eq!(
        head(&addr, "/assets/app.js", "cache-control").as_deref(),
        Some("max-age=3600")
    );
    assert_eq!(
        head(&addr, "/assets/app.js", "x-asset").as_deref(),
        Some("yes")
    );
    assert_eq!(
        head(&addr, "/index.html", "cache-control").as_deref(),
        Some("no-store")
    );
    assert_eq!(head(&addr, "/index.html", "x-asset"), None);
    // The flag's header list replaced the file's.
    assert_eq!(
        head(&addr, "/index.html", "x-site").as_deref(),
        Some("flag")
    );
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "z.toml",
        "idle-timeout = 7\n[[rule]]\nglob = \"/docs/**\"\nlisting = false\n",
    );
    let out = Command::new(bin())
        .args([
            "serve",
            "--check-config",
            "--config",
            &cfg,
            "--workers",
            "3",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for want in [
        "idle-timeout = 7.0",
        "workers = 3",
        "header-timeout = 10.0",
        "[[rule]]",
        "glob = \"docs/**\"",
        "listing = false",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    // What it printed is itself a valid config file that says the same.
    let again = write(dir.path(), "again.toml", &text);
    let out2 = Command::new(bin())
        .args(["serve", "--check-config", "--config", &again])
        .output()
        .unwrap();
    assert_eq!(out2.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out2.stdout), text);
}

#[test]
fn bad_files_say_where_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("root = \".\"\nbogus = 1\n", ":2:1:", "bogus"),
        ("workers = \"two\"\n", ":1:11:", "invalid type"),
        ("max-connections = -1\n", ":1:19:", "-1 is negative"),
        ("idle-timeout = -2\n", ":1:16:", "seconds"),
        ("[[rule]]\nglob = \"../**\"\n", ":2:8:", "escapes"),
        ("[[rule]]\nglob = \"a/../../b\"\n", ":2:8:", "escapes"),
        (
            "header = [\"X-A: a\\r\\nSet-Cookie: x\"]\n",
            ":1:10:",
            "control character",
        ),
        (
            "[[rule]]\nglob = \"x\"\nrate-limit = 3\n",
            ":3:14:",
            "reserved",
        ),
        ("engine = \"warp\"\n", ":1:10:", "unknown engine"),
        ("listen = \"nope\"\n", ":1:10:", ""),
        (
            "[[rule]]\nglob = \"x\"\nerror-page = [\"404=/no/such\"]\n",
            "",
            "/no/such",
        ),
        ("root = [", ":1:", ""),
    ];
    for (text, at, says) in cases {
        let cfg = write(dir.path(), "bad.toml", text);
        let out = Command::new(bin())
            .args(["serve", "--check-config", "--config", &cfg])
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {err}");
        assert!(err.contains(&format!("bad.toml{at}")), "{text:?}: {err}");
        assert!(err.contains(says), "{text:?}: {err}");
        assert!(out.stdout.is_empty(), "{text:?}");
    }
    let out = Command::new(bin())
        .args(["serve", "--config", "/no/such.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such.toml"));
}
