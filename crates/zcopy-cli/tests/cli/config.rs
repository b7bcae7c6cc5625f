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
        "idle-timeout = 7\n[[rule]]\nglob = \"/docs/**\"\nlisting = false\nimmutable = true\n",
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
        "immutable = true",
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

/// Runs `zcopy serve ARGS` until it exits (20 s at most; a server that started
/// is killed and reported as `None`), with its stderr.
fn exit_of(args: &[&str]) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = Command::new(bin())
        .arg("serve")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (code, err)
}

#[test]
fn check_config_refuses_what_start_would_and_start_exits_2_for_each() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("index.html"), "<p>app</p>").unwrap();
    let root = root.to_str().unwrap();
    let [cert, key, other] = crate::tls::files(dir.path());
    let missing_key = dir.path().join("no-such-key.pem");
    let missing_key = missing_key.to_str().unwrap();
    let no_dir_log = dir.path().join("no/such/dir/access.log");
    let no_dir_log = no_dir_log.to_str().unwrap();
    let https = ["--listen", "https://127.0.0.1:0", "--tls-cert", &cert];
    let cases: [(Vec<&str>, &str); 5] = [
        (
            [&https[..], &["--tls-key", missing_key]].concat(),
            "no-such-key.pem",
        ),
        ([&https[..], &["--tls-key", &other]].concat(), "other.pem"),
        (vec!["--access-log", no_dir_log], "no/such/dir"),
        (vec!["--fallback", "missing.html"], "missing.html"),
        (vec!["--error-page", "404=404.html"], "404.html"),
    ];
    for (args, says) in &cases {
        let (code, err) = exit_of(&[&["--check-config", root], &args[..]].concat());
        assert_eq!(code, Some(2), "--check-config {args:?}: {err}");
        assert!(err.contains(says), "--check-config {args:?}: {err}");
        let (code, err) = exit_of(&[&["--listen", "127.0.0.1:0", root], &args[..]].concat());
        assert_eq!(code, Some(2), "start {args:?}: {err}");
        assert!(err.contains(says), "start {args:?}: {err}");
    }
    // The same settings made right pass, and nothing was created by the check.
    let log = dir.path().join("access.log");
    let good = [
        &https[..],
        &["--tls-key", &key, "--access-log", log.to_str().unwrap()],
        &[
            "--fallback",
            "index.html",
            "--error-page",
            "404=/index.html",
        ],
    ]
    .concat();
    let (code, err) = exit_of(&[&["--check-config", root], &good[..]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(!log.exists(), "--check-config created the access log");
}

/// `[default: X]` of `--flag` in `zcopy serve --help`.
fn help_default(help: &str, flag: &str) -> String {
    let at = [" ", "["]
        .iter()
        .find_map(|end| help.find(&format!("--{flag}{end}")))
        .unwrap_or_else(|| panic!("{flag} not in --help"));
    let rest = &help[at..];
    let d = rest.find("[default: ").expect("a default") + "[default: ".len();
    rest[d..d + rest[d..].find(']').unwrap()].to_owned()
}

#[test]
fn help_readme_security_and_check_config_tell_the_same_defaults() {
    let help = stdout_of_serve(&["--help"]);
    let dir = tempfile::tempdir().unwrap();
    let printed = stdout_of_serve(&["--check-config", dir.path().to_str().unwrap()]);
    let key = |k: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = ")))
            .unwrap_or_else(|| panic!("{k} not printed:\n{printed}"))
            .to_owned()
    };
    let cache = key("tls-session-cache");
    assert_eq!(help_default(&help, "tls-session-cache"), cache);
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(docs.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("(`--tls-session-cache N`, {cache})")),
        "README disagrees on --tls-session-cache {cache}"
    );
    // Listings: on by default, and SECURITY.md says so.
    assert_eq!(key("listing"), "true");
    assert_eq!(help_default(&help, "listing"), "true");
    let security = std::fs::read_to_string(docs.join("SECURITY.md")).unwrap();
    let row = security
        .lines()
        .find(|l| l.starts_with("| directory listings |"))
        .expect("SECURITY.md has a listings row");
    assert!(row.contains("| **on**"), "{row}");
    // Uploads: off, 1 GiB at most, no anonymous writes off loopback; all three
    // places say so.
    assert_eq!(key("upload"), "false");
    assert_eq!(key("webdav"), "false");
    assert_eq!(key("allow-anonymous-writes"), "false");
    assert_eq!(key("max-upload-size"), "\"1G\"");
    assert_eq!(help_default(&help, "max-upload-size"), "1G");
    for (row, want) in [
        ("| uploads (PUT) |", "| **off**"),
        ("| upload body size |", "| 1 GiB"),
        ("| WebDAV |", "| **off**"),
        (
            "| WebDAV request body (PROPFIND, PROPPATCH, LOCK) |",
            "| 64 KiB",
        ),
    ] {
        let line = security
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("SECURITY.md lacks {row}"));
        assert!(line.contains(want), "{line}");
    }
    // Every key format that loads is named.
    let tls_key = &help[help.find("--tls-key ").unwrap()..help.find("--redirect-http").unwrap()];
    for word in ["PKCS#8", "PKCS#1", "SEC1", "Ed25519"] {
        assert!(
            tls_key.contains(word),
            "--tls-key help lacks {word}: {tls_key}"
        );
    }
}

fn stdout_of_serve(args: &[&str]) -> String {
    let out = Command::new(bin())
        .arg("serve")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn pkcs1_rsa_and_ed25519_keys_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let check = |cert: &Path, key: &Path| {
        exit_of(&[
            "--check-config",
            "--listen",
            "https://127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            d.to_str().unwrap(),
        ])
    };
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&ed)
        .unwrap();
    std::fs::write(d.join("ed.crt"), cert.pem()).unwrap();
    std::fs::write(d.join("ed.key"), ed.serialize_pem()).unwrap();
    let (code, err) = check(&d.join("ed.crt"), &d.join("ed.key"));
    assert_eq!(code, Some(0), "Ed25519: {err}");
    // PKCS#1 ("BEGIN RSA PRIVATE KEY") from openssl, when it is installed.
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(d.join("rsa8.key"))
        .arg("-out")
        .arg(d.join("rsa.crt"))
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("openssl")
            .args(["rsa", "-traditional", "-in"])
            .arg(d.join("rsa8.key"))
            .arg("-out")
            .arg(d.join("rsa1.key"))
            .output()
            .is_ok_and(|o| o.status.success());
    if !made {
        eprintln!("openssl missing: PKCS#1 not tried");
        return;
    }
    let pem = std::fs::read_to_string(d.join("rsa1.key")).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
    let (code, err) = check(&d.join("rsa.crt"), &d.join("rsa1.key"));
    assert_eq!(code, Some(0), "PKCS#1 RSA: {err}");
}
