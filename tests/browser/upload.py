#!/usr/bin/env python3
"""The listing page's upload, in a real browser (headless chromium via selenium).

Starts the real server (the built `zcopy` binary, `--upload`, port 0), opens the
listing page, picks a file through the page's file input (drag and drop is hard to
drive; the input runs the same upload code), waits until the page says the upload
is done with its progress bar full, and checks the file on disk byte for byte. Also
checks that the page served with uploads off has no upload controls, and that the
script is the server's own (the page runs under `Content-Security-Policy:
default-src 'self'`: no inline script, nothing external).

Usage: tests/browser/upload.py [path/to/zcopy]   (default: target/debug/zcopy)
Exit 0: passed; 1: failed; 77: skipped (prints "skipped: <why>").
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77


def skip(why):
    print(f"skipped: {why}")
    sys.exit(SKIP)


try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    skip("selenium is not installed (pip install selenium)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
)
if not CHROMIUM:
    skip("chromium is not installed (apt-get install chromium)")
if not DRIVER:
    skip("chromedriver is not installed (apt-get install chromium-driver)")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZCOPY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/zcopy")
if not os.access(ZCOPY, os.X_OK):
    print(f"FAILED: no zcopy binary at {ZCOPY} (cargo build -p zcopy-cli)")
    sys.exit(1)


def start(root, *flags):
    """The server on 127.0.0.1 port 0; returns (process, base URL)."""
    p = subprocess.Popen(
        [ZCOPY, "serve", root, "--listen", "127.0.0.1:0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 20
    seen = []
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if m and m.group(1) != "0":
            return p, f"http://127.0.0.1:{m.group(1)}"
    p.kill()
    print("FAILED: the server did not say where it listens:\n" + "".join(seen))
    sys.exit(1)


def browser():
    o = Options()
    o.binary_location = CHROMIUM
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]:
        o.add_argument(a)
    return webdriver.Chrome(service=Service(DRIVER), options=o)


def main():
    tmp = tempfile.mkdtemp(prefix="zcopy-browser-")
    root = os.path.join(tmp, "root")
    os.mkdir(root)
    with open(os.path.join(root, "existing.txt"), "w") as f:
        f.write("here before\n")
    # 3 MiB of varied bytes, with a name that needs encoding.
    src = os.path.join(tmp, "up load é.bin")
    data = os.urandom(3 << 20)
    with open(src, "wb") as f:
        f.write(data)
    procs = []
    driver = None
    try:
        # Under a strict CSP (scripts from the server only, no inline script), as a
        # rule's header can set it: the page must still work.
        csp = os.path.join(tmp, "csp.toml")
        with open(csp, "w") as f:
            f.write('[[rule]]\nglob = "**"\nheader = ["Content-Security-Policy: '
                    "default-src 'self'; style-src 'unsafe-inline'\"]\n")
        srv, url = start(root, "--upload", "--config", csp)
        procs.append(srv)
        driver = browser()
        driver.set_page_load_timeout(30)
        driver.get(url + "/")
        # The script is the server's own, not inline.
        scripts = driver.find_elements(By.TAG_NAME, "script")
        assert len(scripts) == 1, "one script"
        assert scripts[0].get_attribute("src").endswith("/?asset=upload.js"), scripts[0].get_attribute("src")
        assert driver.find_element(By.ID, "zu").get_attribute("data-webdav") == "0"
        # No WebDAV: no new-folder or delete buttons.
        assert not driver.find_element(By.ID, "zu-mkdir").is_displayed()
        assert not driver.find_elements(By.CLASS_NAME, "zu-del")
        driver.find_element(By.ID, "zu-files").send_keys(src)
        WebDriverWait(driver, 60, poll_frequency=0.1).until(
            lambda d: d.find_element(By.ID, "zu").get_attribute("data-state") in ("done", "failed")
        )
        state = driver.find_element(By.ID, "zu").get_attribute("data-state")
        status = driver.find_element(By.ID, "zu-status").text
        bar = driver.find_element(By.ID, "zu-bar")
        assert state == "done", f"upload state {state}: {status}"
        assert float(bar.get_attribute("value")) == float(bar.get_attribute("max")), "progress full"
        dest = os.path.join(root, "up load é.bin")
        with open(dest, "rb") as f:
            got = f.read()
        assert got == data, f"byte-exact: {len(got)} bytes on disk, {len(data)} sent"
        assert sorted(os.listdir(root)) == ["existing.txt", "up load é.bin"], os.listdir(root)
        # After a reload the file is listed.
        driver.get(url + "/")
        assert "up load é.bin" in driver.page_source
        srv.terminate()
        srv.wait(10)

        # With WebDAV (a build that has --webdav): the page says so, and its
        # new-folder button makes a directory (MKCOL) and a delete button removes a
        # file (DELETE).
        help_text = subprocess.run([ZCOPY, "serve", "--help"], capture_output=True, text=True).stdout
        if "--webdav" in help_text:
            dav, url = start(root, "--webdav")
            procs.append(dav)
            driver.get(url + "/")
            zu = driver.find_element(By.ID, "zu")
            assert zu.get_attribute("data-webdav") == "1", (
                "--webdav is on but the page says data-webdav=0: set UploadUi::Dav in "
                "handler::upload_ui from eff.webdav.unwrap_or(cfg.webdav)"
            )
            driver.find_element(By.ID, "zu-mkdir").click()
            alert = WebDriverWait(driver, 10).until(lambda d: d.switch_to.alert)
            alert.send_keys("new folder")
            alert.accept()
            WebDriverWait(driver, 20).until(
                lambda d: os.path.isdir(os.path.join(root, "new folder"))
            )
            driver.get(url + "/")
            for b in driver.find_elements(By.CLASS_NAME, "zu-del"):
                if b.get_attribute("title") == "Delete existing.txt":
                    b.click()
                    WebDriverWait(driver, 10).until(lambda d: d.switch_to.alert).accept()
                    break
            else:
                raise AssertionError("no delete button for existing.txt")
            WebDriverWait(driver, 20).until(
                lambda d: not os.path.exists(os.path.join(root, "existing.txt"))
            )
            dav.terminate()
            dav.wait(10)
            print("ok: new folder (MKCOL) and delete (DELETE) from the listing page")
        else:
            print("note: this build has no --webdav: the folder/delete controls were not driven")

        # Uploads off: the same page has no upload controls and no script.
        off, url = start(root)
        procs.append(off)
        driver.get(url + "/")
        assert not driver.find_elements(By.ID, "zu"), "no upload controls when uploads are off"
        assert not driver.find_elements(By.TAG_NAME, "script")
        print("ok: a file picked on the listing page arrived byte-exact through PUT, with progress")
        return 0
    except AssertionError as e:
        print(f"FAILED: {e}")
        return 1
    finally:
        if driver is not None:
            driver.quit()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
