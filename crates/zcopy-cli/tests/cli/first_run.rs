//! `zcopy serve` as a new user first tries it (issue 18, item 6): the forms other
//! servers take (a bare `--cors`, a certificate with a plain `--listen ADDR`) work the
//! same here, and a word an optional value swallowed is named in the error.

use std::process::{Child, Command, Stdio};

use super::serve::{bin, launch, signal};

/// A root with one file, `a.txt`.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"A").unwrap();
    dir
}

/// `zcopy serve ARGS`, started: the child and its start-up line.
fn serve(args: &[&str]) -> (Child, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("serve").args(args).stderr(Stdio::null());
    launch(cmd)
}

/// The `SCHEME://ADDR` the start-up line names.
fn url_in(line: &str) -> String {
    line.split(' ')
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches('/')
        .to_owned()
}

fn stop(mut child: Child) {
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// `zcopy serve ARGS`, which must exit 2: its stderr.
fn refused(args: &[&str]) -> String {
    let out = Command::new(bin())
        .arg("serve")
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    err
}

/// The Access-Control-Allow-Origin answered to a GET of /a.txt from `origin`.
fn allowed(url: &str, origin: &str) -> Option<String> {
    let r = ureq::get(&format!("{url}/a.txt"))
        .header("Origin", origin)
        .call()
        .unwrap();
    r.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The issue: `--cors` alone was refused ("a value is required"), where http-server
/// and miniserve take a bare flag to mean any origin. Now it means `*`, before another
/// flag or last; `--cors ORIGIN` still names origins; `cors = true` in the file is `*`.
#[test]
fn a_bare_cors_flag_and_cors_true_mean_any_origin() {
    let dir = site();
    let root = dir.path().to_str().unwrap();
    let origin = "https://app.example";
    for args in [
        &["--cors", "--listen", "127.0.0.1:0", root][..],
        &["--listen", "127.0.0.1:0", root, "--cors"],
    ] {
        let (child, line) = serve(args);
        assert!(line.contains("CORS *"), "{args:?}: {line}");
        assert_eq!(
            allowed(&url_in(&line), origin).as_deref(),
            Some("*"),
            "{args:?}"
        );
        stop(child);
    }
    let (child, line) = serve(&["--listen", "127.0.0.1:0", root, "--cors", origin]);
    let url = url_in(&line);
    assert_eq!(allowed(&url, origin).as_deref(), Some(origin));
    assert_eq!(allowed(&url, "https://other.example"), None);
    stop(child);

    let cfg = dir.path().join("z.toml");
    std::fs::write(&cfg, "cors = true\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let (child, line) = serve(&["--listen", "127.0.0.1:0", root, "--config", cfg]);
    assert_eq!(allowed(&url_in(&line), origin).as_deref(), Some("*"));
    stop(child);
    // Printed as the value it stands for, so the printed file reads back the same.
    let out = Command::new(bin())
        .args(["serve", root, "--check-config", "--config", cfg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cors = \"*\""));
    std::fs::write(
        dir.path().join("z.toml"),
        "[[rule]]\nglob = \"x/**\"\ncors = false\n",
    )
    .unwrap();
    let err = refused(&[root, "--check-config", "--config", cfg]);
    assert!(
        err.contains("z.toml:3:8") && err.contains("remove it"),
        "{err}"
    );
    // A bare `--cors` takes the next word as its value: where that word was meant as
    // ROOT, the error says how to write it.
    let err = refused(&["--listen", "127.0.0.1:0", "--cors", root]);
    assert!(
        err.contains(&format!("zcopy serve {root} --cors")),
        "--cors ROOT: {err}"
    );
}

/// Whether curl fetches `url`/a.txt as "A", trusting `ca` only.
fn curl_gets(url: &str, ca: &str) -> bool {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", ca])
        .arg(format!("{url}/a.txt"))
        .output()
        .unwrap();
    out.status.success() && out.stdout == b"A"
}

/// The issue: `--tls-cert/--tls-key` with a plain `--listen ADDR` exited 2 ("no
/// https:// listener"), where miniserve and static-web-server serve HTTPS. Now a
/// listener written without a scheme serves HTTPS when a certificate is given and no
/// listener says https://; `http://ADDR` stays plain, and a set that mixes `ADDR` with
/// `https://ADDR` keeps its bare ones plain (as before).
#[test]
fn a_certificate_makes_a_listener_without_a_scheme_serve_https() {
    if !crate::util::tool("curl", "--version") {
        return;
    }
    let dir = site();
    let root = dir.path().to_str().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let [cert, key, _] = crate::tls::files(keys.path());
    let tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];

    let (child, line) = serve(&[&["--listen", "127.0.0.1:0", root], &tls[..]].concat());
    let url = url_in(&line);
    assert!(url.starts_with("https://127.0.0.1:"), "{line}");
    assert!(curl_gets(&url, &cert), "{url}");
    stop(child);

    // The same from the config file.
    let cfg = keys.path().join("z.toml");
    std::fs::write(
        &cfg,
        format!("listen = [\"127.0.0.1:0\"]\ntls-cert = \"{cert}\"\ntls-key = \"{key}\"\n"),
    )
    .unwrap();
    let (child, line) = serve(&[root, "--config", cfg.to_str().unwrap()]);
    let url = url_in(&line);
    assert!(url.starts_with("https://127.0.0.1:"), "{line}");
    assert!(curl_gets(&url, &cert), "{url}");
    stop(child);

    // A bare address beside an https:// one stays plain HTTP.
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--listen", "https://127.0.0.1:0", root])
        .args(tls)
        .stderr(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut urls = [(); 2].map(|_| url_in(&lines.next().unwrap().unwrap()));
    urls.sort();
    let [plain, https] = urls;
    assert!(plain.starts_with("http://"), "{plain}");
    assert!(https.starts_with("https://"), "{https}");
    assert!(curl_gets(&https, &cert), "{https}");
    assert_eq!(super::serve::get(&plain["http://".len()..], "/a.txt"), b"A");
    stop(child);

    // http:// says plain: with no other listener, the certificate has no use.
    let err = refused(&[&["--listen", "http://127.0.0.1:0", root], &tls[..]].concat());
    assert!(err.contains("every listener says http://"), "{err}");
}

/// `--listen 8080` (a port alone) said "no port"; `:8080` "invalid address";
/// `--metrics 9100` and `--redirect-http 80` "invalid socket address syntax". A port
/// alone means this machine to some servers and every interface to others (nginx, Go),
/// so the error offers both.
#[test]
fn a_port_alone_asks_which_address() {
    let dir = site();
    let root = dir.path().to_str().unwrap();
    for flag in ["--listen", "--metrics", "--redirect-http"] {
        for port in ["8080", ":8080"] {
            let err = refused(&[flag, port, root]);
            assert!(
                err.contains("127.0.0.1:8080") && err.contains("0.0.0.0:8080"),
                "{flag} {port}: {err}"
            );
        }
    }
}

/// `zcopy serve --access-log dist/` logged to dist/ ("access log dist/: Is a
/// directory"), and `zcopy serve --listing false` served a directory named `false`
/// ("false: No such file or directory"): an optional value took the word meant as
/// ROOT, or ROOT took a BOOL flag's value. The errors now say so and how to write it.
#[test]
fn a_root_taken_as_a_flags_value_is_named() {
    let dir = site();
    let root = dir.path().to_str().unwrap();
    let err = refused(&["--listen", "127.0.0.1:0", "--access-log", root]);
    assert!(
        err.contains("is a directory") && err.contains("--access-log -"),
        "--access-log ROOT: {err}"
    );
    let err = refused(&["--listen", "127.0.0.1:0", "--listing", "false"]);
    assert!(err.contains("--listing=false"), "{err}");
}

/// The Cache-Control values of a GET of `path`.
fn cache_controls(url: &str, path: &str) -> Vec<String> {
    let r = ureq::get(&format!("{url}{path}")).call().unwrap();
    r.headers()
        .get_all("cache-control")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// `--header 'Cache-Control: no-store'` sent a second Cache-Control beside the
/// listing's `no-cache` (or --cache-control's value). It now is --cache-control:
/// one header on files and listings; giving both is refused.
#[test]
fn a_cache_control_header_is_sent_once() {
    let dir = site();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let root = dir.path().to_str().unwrap();
    let (child, line) = serve(&[
        "--listen",
        "127.0.0.1:0",
        root,
        "--header",
        "Cache-Control: no-store",
        "--header",
        "X-A: 1",
    ]);
    let url = url_in(&line);
    assert_eq!(cache_controls(&url, "/a.txt"), ["no-store"]);
    assert_eq!(cache_controls(&url, "/sub/"), ["no-store"]);
    stop(child);
    let err = refused(&[
        "--listen",
        "127.0.0.1:0",
        root,
        "--header",
        "cache-control: no-store",
        "--cache-control",
        "max-age=60",
    ]);
    assert!(err.contains("give it once"), "{err}");
}
