//! The built-in dashboard in a real browser: headless Debian Chromium,
//! driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`,
//! no port opened), loads the page of a real coordinator holding a finished
//! campaign, and we read the rendered DOM: verdict matrix, fleet, campaign
//! progress, live-stream state. Screenshots at desktop and phone width go
//! to `target/test-output/dashboard/`; at phone width nothing may overflow
//! the viewport horizontally (wide tables scroll inside their card).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::*;
use crate::http::{campaign, get};

/// A Debian-packaged tool a test needs: its path, or `None` after printing
/// the skip line when `VANTAGE_SKIP_LAB=1`; otherwise missing is a failure
/// naming the package.
pub(crate) fn debian_tool(test: &str, names: &[&str], package: &str) -> Option<PathBuf> {
    let found = vantage_testkit::skip::find_tool(names);
    let missing: Vec<String> = found
        .is_none()
        .then(|| names[0].to_string())
        .into_iter()
        .collect();
    let how = format!(
        "from the Debian package `{package}`: apt-get install -y {package}, \
         or bash deploy/scripts/install-test-deps.sh"
    );
    vantage_testkit::skip::require(test, &missing, &how);
    found
}

/// A test cannot run without `what`: `None` after printing the skip line
/// when `VANTAGE_SKIP_LAB=1`; otherwise a failure saying what is missing.
pub(crate) fn missing<T>(test: &str, what: &str) -> Option<T> {
    vantage_testkit::skip::require(
        test,
        &[what.to_string()],
        "bash deploy/scripts/install-test-deps.sh installs it",
    );
    None
}

/// `target/test-output/<name>/`, created fresh.
pub(crate) fn output_dir(name: &str) -> PathBuf {
    let target = coordinator_bin()
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target dir");
    let dir = target.join("test-output").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test output dir");
    dir
}

// ------------------------------------------------------------ CDP client

/// Headless Chromium with a DevTools-protocol session on one page.
struct Browser {
    child: Child,
    tx: ChildStdin,
    rx: mpsc::Receiver<Value>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(chromium: &Path, log: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        // The protocol runs on fds 3 (to Chromium) and 4 (from it); the
        // shell moves our stdin/stdout pipes there, so no unsafe pre_exec.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-features=Translate,MediaRouter,OptimizationHints",
                "--metrics-recording-only",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("chromium log"))
            .spawn()
            .expect("spawn chromium");
        let tx = child.stdin.take().expect("pipe to chromium");
        let mut out = BufReader::new(child.stdout.take().expect("pipe from chromium"));
        let (send, rx) = mpsc::channel();
        std::thread::spawn(move || loop {
            let mut buf = Vec::new();
            match out.read_until(0, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            buf.pop();
            if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                if send.send(v).is_err() {
                    return;
                }
            }
        });
        let mut b = Browser {
            child,
            tx,
            rx,
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let attached = b.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().expect("session").to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.tx.write_all(&bytes).expect("write to chromium");
        self.tx.flush().expect("write to chromium");
        loop {
            let v = self
                .rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("chromium did not answer {method}: {e}"));
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("{method}: {err}");
                }
                return v["result"].clone();
            }
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    /// Evaluates a JavaScript expression in the page; its JSON value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{expr}: {ex}");
        }
        r["result"]["value"].clone()
    }

    fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
    }

    /// A PNG of the whole page, written to `path`; its bytes.
    fn screenshot(&mut self, path: &Path) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        std::fs::write(path, &png).expect("write screenshot");
        png
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Width and height from a PNG's IHDR.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG ({} bytes)",
        png.len()
    );
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    (be(&png[16..20]), be(&png[20..24]))
}

/// What the page shows, read from the DOM.
const READ_PAGE: &str = r##"(() => {
  const rows = sel => [...document.querySelectorAll(sel)].map(tr =>
    [...tr.cells].map(td => ({ text: td.textContent.trim(), cls: td.className })));
  return {
    matrix: rows("#matrix tr"),
    fleet: rows("#fleet tbody tr"),
    campaigns: rows("#campaigns tbody tr"),
    summary: document.getElementById("summary")?.textContent,
    live: document.getElementById("live-text")?.textContent,
    stale: window.__vantage_stale === true,
    series: document.querySelectorAll("#series svg").length,
  };
})()"##;

/// Elements sticking out of the viewport on the right (or left), except
/// inside a card that scrolls horizontally by design; and the page's own
/// horizontal overflow.
const OVERFLOW: &str = r##"(() => {
  const vw = document.documentElement.clientWidth;
  const scrolls = el => { for (let p = el.parentElement; p; p = p.parentElement) {
    const o = getComputedStyle(p).overflowX; if (o === "auto" || o === "scroll" || o === "hidden") return p !== document.body && p !== document.documentElement; } return false; };
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if ((r.right > vw + 0.5 || r.left < -0.5) && !scrolls(el))
      out.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${el.className}: ${r.left.toFixed(0)}..${r.right.toFixed(0)}`);
  }
  const cards = [...document.querySelectorAll("section")]
    .filter(s => s.scrollWidth > s.clientWidth + 1)
    .map(s => `${s.querySelector("h2")?.textContent}: ${s.scrollWidth} > ${s.clientWidth}`);
  return { viewport: vw, scroll_width: document.documentElement.scrollWidth, offenders: out.slice(0, 20), scrolling_cards: cards };
})()"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_shows_the_verdict_matrix() {
    let name = "dashboard_in_headless_chromium_shows_the_verdict_matrix";
    let Some(chromium) = debian_tool(name, &["chromium"], "chromium") else {
        return;
    };
    let out = output_dir("dashboard");
    let c = Coordinator::init().with_http().start();
    let http = c.http.clone().unwrap();
    let _fleet = fleet(&c, 0).await;
    let closed = free_port();
    let id = campaign(&c, &http, closed).await;
    let port = c.addr.rsplit(':').next().unwrap().to_string();
    let open_target = format!("tcp 127.0.0.1:{port}");
    let closed_target = format!("tcp 127.0.0.1:{closed}");

    // What the API says, which the page must show.
    let verdicts = get(&http, &format!("/api/v1/verdicts?campaign={id}"))
        .await
        .json();
    let mut want: Vec<(String, String)> = verdicts["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["country"], "CN", "{v}");
            (
                v["target"].as_str().unwrap().to_string(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    want.sort();
    want.dedup();
    let mut expected = vec![
        (open_target, "ok".to_string()),
        (closed_target, "down".to_string()),
    ];
    expected.sort();
    assert_eq!(want, expected, "{verdicts}");

    let url = format!("http://{http}/");
    let mut b = Browser::launch(&chromium, &out.join("chromium.log"));
    b.viewport(1280, 900, false);
    b.navigate(&url);
    let mut page = Value::Null;
    wait_until(
        Duration::from_secs(30),
        "the dashboard to render its matrix and go live",
        || {
            page = b.eval(READ_PAGE);
            page["matrix"].as_array().map_or(0, Vec::len) == 3
                && page["live"] == "live"
                && page["campaigns"][0][1]["text"] == "done"
        },
    );

    // Verdict matrix: header Target | CN, one row per target, the cell's
    // class and text the verdict's status.
    let matrix = page["matrix"].as_array().unwrap();
    let header: Vec<&str> = matrix[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(header, ["Target", "CN"], "{page}");
    let mut shown: Vec<(String, String)> = matrix[1..]
        .iter()
        .map(|row| {
            let cell = &row[1];
            let status = cell["text"].as_str().unwrap().to_string();
            assert_eq!(cell["cls"], format!("cell {status}"), "{row}");
            (row[0]["text"].as_str().unwrap().to_string(), status)
        })
        .collect();
    shown.sort();
    assert_eq!(shown, want, "{page}");

    // Fleet by country, the summary line, the campaign's progress, charts.
    let fleet_rows: Vec<Vec<String>> = page["fleet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|c| c["text"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        fleet_rows,
        [["CN", "2", "0", "0"], ["DE", "1", "0", "0"]],
        "{page}"
    );
    assert_eq!(page["summary"], "3 agents, 3 online");
    let camp = &page["campaigns"][0];
    assert_eq!(camp[0]["text"], "http-e2e");
    assert!(
        camp[2]["text"]
            .as_str()
            .unwrap()
            .replace('\u{a0}', " ")
            .ends_with("1/1 runs"),
        "{camp}"
    );
    assert_eq!(camp[3]["text"], "2");
    assert_eq!(page["series"], 2, "one chart per target");
    let o = b.eval(OVERFLOW);
    assert!(
        o["offenders"] == json!([]) && o["scrolling_cards"] == json!([]),
        "overflow at 1280px: {o}"
    );
    let png = b.screenshot(&out.join("desktop.png"));
    let (w, h) = png_size(&png);
    assert_eq!(w, 1280);
    assert!(h >= 400, "{h}");

    // Phone width: the same content, nothing wider than the screen.
    b.eval("window.__vantage_stale = true");
    b.viewport(390, 844, true);
    b.navigate(&url);
    wait_until(
        Duration::from_secs(30),
        "the dashboard to render at phone width",
        || {
            page = b.eval(READ_PAGE);
            page["stale"] == false
                && page["matrix"].as_array().map_or(0, Vec::len) == 3
                && page["live"] == "live"
        },
    );
    let o = b.eval(OVERFLOW);
    assert_eq!(o["viewport"], 390, "{o}");
    assert!(
        o["scroll_width"].as_u64().unwrap() <= 390
            && o["offenders"] == json!([])
            && o["scrolling_cards"] == json!([]),
        "horizontal overflow at 390px: {o}"
    );
    let png = b.screenshot(&out.join("phone.png"));
    assert_eq!(png_size(&png).0, 390);
    eprintln!(
        "dashboard screenshots in {} ({} bytes phone)",
        out.display(),
        png.len()
    );
}
