//! The built-in dashboard in a real browser: headless Debian Chromium,
//! driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`,
//! no port opened), loads the page of a real coordinator holding a finished
//! campaign, and we read the rendered DOM: verdict matrix, fleet, campaign
//! progress, live-stream state, and the timeline's bands (pixels of its
//! canvases) and change markers. Screenshots at desktop and phone width go
//! to `target/test-output/dashboard/` and `target/test-output/timeline/`;
//! at phone width nothing may overflow the viewport horizontally (wide
//! tables scroll inside their card). Without a browser: the vendored chart
//! library is served as the page asks for it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::changes::{every_3s, runs_done, Switched};
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

    /// Launched, with a desktop viewport, at `url`.
    fn at(chromium: &Path, log: &Path, url: &str) -> Browser {
        let mut b = Browser::launch(chromium, log);
        b.viewport(1280, 900, false);
        b.navigate(url);
        b
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
    timeline: [...document.querySelectorAll("#timeline .tl-chart")].map(d => {
      const over = d.querySelector(".u-over");
      const W = over ? over.clientWidth : 0;
      const markers = [...d.querySelectorAll(".tl-change")].map(m => ({
        label: m.getAttribute("aria-label"), change: m.dataset.change, country: m.dataset.country,
        from: m.offsetLeft / W, to: (m.offsetLeft + m.offsetWidth) / W,
      }));
      return { target: d.dataset.target, rows: d.dataset.rows, markers,
        canvases: d.querySelectorAll("canvas").length, width: d.querySelector(".uplot")?.offsetWidth };
    }),
    timeline_note: document.getElementById("timeline-note")?.textContent,
    changes: [...document.querySelectorAll("#changes li")].map(li => li.textContent),
  };
})()"##;

/// The colour a timeline's canvas shows in each band (top to bottom) at
/// these fractions of the plot's width: `[[[r, g, b, a], ...], ...]`.
const BAND_PIXELS: &str = r##"((target, fractions) => {
  const d = [...document.querySelectorAll("#timeline .tl-chart")].find(d => d.dataset.target === target);
  const c = d.querySelector("canvas"), o = d.querySelector(".u-over");
  const cr = c.getBoundingClientRect(), or = o.getBoundingClientRect(), k = c.width / cr.width;
  const n = d.dataset.rows.split(",").length, ctx = c.getContext("2d");
  return [...Array(n).keys()].map(i => fractions.map(f => [...ctx.getImageData(
    Math.round((or.left - cr.left + or.width * f) * k),
    Math.round((or.top - cr.top + or.height * (i + 0.5) / n) * k), 1, 1).data]));
})"##;

/// [`BAND_PIXELS`] of `target`'s chart.
fn band_pixels(b: &mut Browser, target: &str, fractions: &[f64]) -> Vec<Vec<[u8; 4]>> {
    let v = b.eval(&format!(
        "{BAND_PIXELS}({}, {})",
        json!(target),
        json!(fractions)
    ));
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// The page's colours (its CSS variables) as the canvas draws them.
const OK_RGB: [u8; 4] = [0x2e, 0x9d, 0x57, 255];
const DOWN_RGB: [u8; 4] = [0x8a, 0x8f, 0x98, 255];

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
        (open_target.clone(), "ok".to_string()),
        (closed_target.clone(), "down".to_string()),
    ];
    expected.sort();
    assert_eq!(want, expected, "{verdicts}");

    let url = format!("http://{http}/");
    let mut b = Browser::at(&chromium, &out.join("chromium.log"), &url);
    let mut page = Value::Null;
    wait_until(
        Duration::from_secs(30),
        "the dashboard to render its matrix and go live",
        || {
            page = b.eval(READ_PAGE);
            page["matrix"].as_array().map_or(0, Vec::len) == 3
                && page["live"] == "live"
                && page["campaigns"][0][1]["text"] == "done"
                && page["timeline"].as_array().map_or(0, Vec::len) == 2
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

    // The timeline: a chart per target, a band for CN, the run drawn in
    // its verdict's colour; one run makes no change event, and the page
    // says so instead of breaking.
    let charts = page["timeline"].as_array().unwrap();
    let mut on_timeline: Vec<&str> = charts
        .iter()
        .map(|c| c["target"].as_str().unwrap())
        .collect();
    on_timeline.sort();
    let mut targets = [open_target.as_str(), closed_target.as_str()];
    targets.sort();
    assert_eq!(on_timeline, targets, "{page}");
    for chart in charts {
        assert_eq!(chart["rows"], "CN", "{chart}");
        assert!(chart["canvases"].as_u64().unwrap() >= 1, "{chart}");
        assert_eq!(chart["markers"], json!([]), "{chart}");
        assert!(chart["width"].as_u64().unwrap() > 900, "{chart}");
    }
    assert_eq!(
        band_pixels(&mut b, &open_target, &[0.25, 0.75]),
        [[OK_RGB; 2]]
    );
    assert_eq!(band_pixels(&mut b, &closed_target, &[0.5]), [[DOWN_RGB]]);
    assert!(
        page["timeline_note"]
            .as_str()
            .unwrap()
            .starts_with("No change events yet."),
        "{page}"
    );
    assert_eq!(page["changes"], json!([]), "{page}");
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
                && page["timeline"].as_array().map_or(0, Vec::len) == 2
        },
    );
    for chart in page["timeline"].as_array().unwrap() {
        let w = chart["width"].as_u64().unwrap();
        assert!(
            (200..=370).contains(&w),
            "a chart {w} px wide at 390: {chart}"
        );
    }
    assert_eq!(band_pixels(&mut b, &open_target, &[0.5]), [[OK_RGB]]);
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

/// The vendored chart library (uPlot): served byte for byte as vendored,
/// with its content type and a cache lifetime, without a token even where
/// reads need one (a script tag sends none); the page asks for exactly
/// these URLs, at the version the script says it is, and has the
/// timeline's container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_serves_the_vendored_chart_library() {
    let c = Coordinator::init().with_http();
    c.set_read_tokens(&["read-token-for-tests-0123456789"]);
    let c = c.start();
    let http = c.http.clone().unwrap();
    assert_eq!(get(&http, "/api/v1/verdicts").await.status, 401);

    let js = include_str!("../../src/http/vendor/uPlot.iife.min.js");
    let css = include_str!("../../src/http/vendor/uPlot.min.css");
    let license = include_str!("../../src/http/vendor/uPlot.LICENSE");
    for (path, content_type, body) in [
        ("/vendor/uplot.js", "text/javascript", js),
        ("/vendor/uplot.css", "text/css", css),
        ("/vendor/uplot-LICENSE.txt", "text/plain", license),
    ] {
        let r = get(&http, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let ct = r.header("content-type").unwrap_or_default();
        assert!(ct.starts_with(content_type), "{path}: content-type {ct}");
        let cache = r.header("cache-control").unwrap_or_default();
        assert!(cache.contains("max-age="), "{path}: cache-control {cache}");
        assert!(r.body == body, "{path}: not the vendored file");
    }
    assert!(js.contains("var uPlot=") && css.contains(".uplot"));
    assert!(license.starts_with("The MIT License"));
    let version = js
        .strip_prefix("/*! https://github.com/leeoniya/uPlot (v")
        .and_then(|rest| rest.split(')').next())
        .expect("the script's banner names its version");

    let page = get(&http, "/").await;
    assert_eq!(page.status, 200);
    for needle in [
        format!("<script src=\"/vendor/uplot.js?v={version}\"></script>"),
        format!("<link rel=\"stylesheet\" href=\"/vendor/uplot.css?v={version}\">"),
        "<div id=\"timeline\">".to_string(),
        "getJSON(\"/changes?".to_string(),
        "new uPlot(".to_string(),
    ] {
        assert!(page.body.contains(&needle), "the page lacks {needle}");
    }
    // The hand-drawn SVG charts are gone.
    assert!(!page.body.contains("<svg"), "an SVG chart is left");
    assert_eq!(get(&http, "/vendor/nothing.js").await.status, 404);
}

/// The timeline of a periodic campaign whose target refused for two runs:
/// its band is green, grey, green again, and the two change events are
/// boxes labelled "ok -> down" and "down -> ok" over the grey's edges; a
/// target that always answered has an all-green band and no box. Hovering
/// a box names the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_timeline_marks_when_a_target_went_down_and_came_back() {
    let name = "dashboard_timeline_marks_when_a_target_went_down_and_came_back";
    let Some(chromium) = debian_tool(name, &["chromium"], "chromium") else {
        return;
    };
    let out = output_dir("timeline");
    let (c, http, _fleet) = http_fleet().await;
    let mut target = Switched::open();
    let port = target.port;
    let flapping = format!("tcp 127.0.0.2:{port}");
    let steady = format!("tcp 127.0.0.1:{}", c.port());
    let targets = tcp_targets("127.0.0.2", &[port]) + &tcp_targets("127.0.0.1", &[c.port()]);
    let id = c.create_campaign(&campaign_spec("timeline", "2s", &every_3s(1, 16), &targets));

    // ok, ok, down, down, ok, ok.
    target.at_runs(&http, &id, &[(2, false), (4, true)]).await;
    until(Duration::from_secs(60), "every run", || async {
        get(&http, &format!("/api/v1/campaigns/{id}")).await.json()["campaign"]["state"] == "done"
    })
    .await;
    assert_eq!(runs_done(&http, &id).await, 6);
    let changes = get(&http, &format!("/api/v1/changes?campaign={id}"))
        .await
        .json();
    let kinds: Vec<&str> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["down", "up"], "{changes}");

    let url = format!("http://{http}/");
    let mut b = Browser::at(&chromium, &out.join("chromium.log"), &url);
    let mut page = Value::Null;
    wait_until(
        Duration::from_secs(30),
        "the timeline with its change markers",
        || {
            page = b.eval(READ_PAGE);
            page["timeline"].as_array().map_or(0, Vec::len) == 2
                && page["changes"].as_array().map_or(0, Vec::len) == 2
                && page["timeline"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["markers"].as_array().map_or(0, Vec::len) == 2)
        },
    );
    let chart = |target: &str| {
        page["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["target"] == target)
            .unwrap_or_else(|| panic!("no chart for {target}: {page}"))
            .clone()
    };
    assert_eq!(chart(&steady)["markers"], json!([]), "{page}");
    let flapping_chart = chart(&flapping);
    assert_eq!(flapping_chart["rows"], "CN");
    let markers = flapping_chart["markers"].as_array().unwrap();
    let labels: Vec<&str> = markers
        .iter()
        .map(|m| m["label"].as_str().unwrap().lines().next().unwrap())
        .collect();
    assert_eq!(labels, ["ok -> down", "down -> ok"], "{flapping_chart}");
    assert_eq!(markers[0]["change"], "down");
    assert_eq!(markers[1]["change"], "up");
    let at = |i: usize, k: &str| markers[i][k].as_f64().unwrap();
    assert!(
        0.0 < at(0, "from") && at(0, "to") < at(1, "from") && at(1, "to") < 1.0,
        "the boxes in order inside the plot: {flapping_chart}"
    );

    // Green before the first box, grey between the boxes, green after.
    let gap = at(1, "from") - at(0, "to");
    let xs = [
        at(0, "from") / 2.0,
        at(0, "to") + gap / 4.0,
        at(1, "from") - gap / 4.0,
        (at(1, "to") + 1.0) / 2.0,
    ];
    assert_eq!(
        band_pixels(&mut b, &flapping, &xs),
        [[OK_RGB, DOWN_RGB, DOWN_RGB, OK_RGB]],
        "at {xs:?} of {flapping_chart}"
    );
    assert_eq!(band_pixels(&mut b, &steady, &xs), [[OK_RGB; 4]]);
    let listed = page["changes"].as_array().unwrap();
    assert!(
        listed[0].as_str().unwrap().contains("down -> ok")
            && listed[1].as_str().unwrap().contains("ok -> down"),
        "newest first: {page}"
    );

    // Hovering the first box names the change in the tooltip.
    let centre = b.eval(&format!(
        r##"(() => {{
          const m = [...document.querySelectorAll("#timeline .tl-chart")]
            .find(d => d.dataset.target === {}).querySelector(".tl-change");
          m.scrollIntoView({{ block: "center" }});
          const r = m.getBoundingClientRect();
          return [r.left + r.width / 2, r.top + r.height / 2];
        }})()"##,
        json!(flapping)
    ));
    let (x, y) = (centre[0].as_f64().unwrap(), centre[1].as_f64().unwrap());
    for (dx, kind) in [(-20.0, "mouseMoved"), (0.0, "mouseMoved")] {
        b.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x + dx, "y": y}),
        );
    }
    let mut tip = Value::Null;
    wait_until(Duration::from_secs(10), "the tooltip", || {
        tip = b.eval(
            r#"(() => { const t = document.getElementById("tl-tip");
              return t.style.display === "block" ? t.textContent : null; })()"#,
        );
        tip.is_string()
    });
    let tip = tip.as_str().unwrap();
    assert!(
        tip.contains(&flapping) && tip.contains("change: ok -> down"),
        "{tip}"
    );
    b.screenshot(&out.join("desktop.png"));

    // The pointer leaves: no tooltip. Phone width on the same page: the
    // charts shrink to the screen.
    b.call(
        "Input.dispatchMouseEvent",
        json!({"type": "mouseMoved", "x": 5, "y": 5}),
    );
    let hidden = b.eval(r#"document.getElementById("tl-tip").style.display"#);
    assert_eq!(hidden, "none");
    b.viewport(390, 844, true);
    wait_until(
        Duration::from_secs(30),
        "the timeline to fit a phone",
        || {
            page = b.eval(READ_PAGE);
            page["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["width"].as_u64().unwrap_or(999) <= 370)
        },
    );
    let o = b.eval(OVERFLOW);
    assert!(
        o["scroll_width"].as_u64().unwrap() <= 390
            && o["offenders"] == json!([])
            && o["scrolling_cards"] == json!([]),
        "horizontal overflow at 390px: {o}"
    );
    assert_eq!(
        band_pixels(&mut b, &flapping, &xs),
        [[OK_RGB, DOWN_RGB, DOWN_RGB, OK_RGB]]
    );
    b.screenshot(&out.join("phone.png"));
}
