//! The OpenAPI document describes the API that runs: Schemathesis (4.32,
//! from PyPI) reads `/api/v1/openapi.json` from a real coordinator holding
//! a real campaign with results and verdicts, generates requests for every
//! operation but the endless event stream, and runs all its checks (status
//! codes, content types, headers, response schemas, schema-valid data
//! accepted, schema-violating data refused, authentication, methods). Twice:
//! in the loopback anonymous mode, then with `read_tokens`, where the token
//! is needed.
//!
//! Needs `st` from `schemathesis==4.32.*`: $VANTAGE_SCHEMATHESIS, the
//! virtual environment deploy/scripts/install-test-deps.sh makes
//! (`~/.cache/vantage/schemathesis-4.32`), or `st` on the PATH. Missing is
//! a failure, unless VANTAGE_SKIP_LAB=1 (then the SKIPPED line).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::dashboard::missing;
use crate::harness::*;
use crate::http::campaign;

const TEST: &str = "openapi_document_passes_schemathesis";
const VERSION: &str = "4.32";
const TOKEN: &str = "openapi-read-token-for-tests-0123456789";
/// Generated requests per operation and phase: about 1,000 requests a run,
/// a few seconds each.
const MAX_EXAMPLES: &str = "25";

/// `st` of the pinned Schemathesis: the path and its version line, or why
/// none was found.
fn schemathesis() -> Result<PathBuf, String> {
    let venv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(format!(".cache/vantage/schemathesis-{VERSION}/bin/st")));
    let candidates = std::env::var_os("VANTAGE_SCHEMATHESIS")
        .map(PathBuf::from)
        .into_iter()
        .chain(venv)
        .chain([PathBuf::from("st")]);
    let mut tried = Vec::new();
    for st in candidates {
        match Command::new(&st).arg("--version").output() {
            Ok(o)
                if String::from_utf8_lossy(&o.stdout).contains(&format!("version {VERSION}.")) =>
            {
                return Ok(st)
            }
            Ok(o) => tried.push(format!(
                "{}: {}",
                st.display(),
                String::from_utf8_lossy(&o.stdout).trim()
            )),
            Err(e) => tried.push(format!("{}: {e}", st.display())),
        }
    }
    Err(tried.join("; "))
}

/// Runs `st run` against the coordinator's HTTP face; panics with its
/// report unless every check passed.
fn run_schemathesis(st: &Path, http: &str, dir: &Path, mode: &str, headers: &[&str]) {
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openapi");
    let report = dir.join(format!("{mode}.txt"));
    let mut cmd = Command::new(st);
    cmd.arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .args(["run", &format!("http://{http}/api/v1/openapi.json")])
        .args(["--checks", "all", "--exclude-path", "/api/v1/stream"])
        .args(["--max-examples", MAX_EXAMPLES, "--workers", "2"])
        .args(["--seed", "1", "--no-color", "--request-timeout", "30"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let t0 = Instant::now();
    let out = cmd
        .env("PYTHONPATH", &hooks)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .current_dir(dir)
        .output()
        .expect("run st");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text += &String::from_utf8_lossy(&out.stderr);
    std::fs::write(&report, &text).expect("write the report");
    assert!(
        out.status.success(),
        "Schemathesis found the document and the API apart ({mode}; report in {}):\n{text}",
        report.display()
    );
    // It ran: every tested operation, some requests each.
    assert!(text.contains("Tested: 9"), "{mode}: {text}");
    let _ = writeln!(
        std::io::stderr(),
        "{TEST}: {mode} passed in {:.1?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_passes_schemathesis() {
    let st = match schemathesis() {
        Ok(st) => st,
        Err(why) => {
            let what = format!(
                "Schemathesis {VERSION} (pip install 'schemathesis=={VERSION}.*', or bash \
                 deploy/scripts/install-test-deps.sh, which installs it in \
                 ~/.cache/vantage/schemathesis-{VERSION}; tried: {why})"
            );
            // Fails the test unless VANTAGE_SKIP_LAB=1 (then the skip line).
            missing::<()>(TEST, &what);
            return;
        }
    };
    let c = Coordinator::init().with_http();
    c.set_config("http_rate_per_minute", "0");
    let mut c = c.start();
    let http = c.http.clone().unwrap();
    let agents = fleet(&c, 0).await;
    let id = campaign(&c, &http, free_port()).await;

    // Real ids, so some requests find a campaign and its agents' results
    // (the rest are drawn, and find nothing).
    let dir = c.root.path().join("schemathesis");
    std::fs::create_dir_all(&dir).unwrap();
    let agent_ids: Vec<String> = agents.iter().map(|a| format!("\"{}\"", a.id)).collect();
    std::fs::write(
        dir.join("schemathesis.toml"),
        format!(
            "[dictionaries.campaigns]\nvalues = [\"{id}\"]\n\n\
             [dictionaries.agents]\nvalues = [{}]\n\n\
             [parameters]\n\
             \"path.id\" = {{ dictionary = \"campaigns\", probability = 0.5 }}\n\
             \"query.campaign\" = {{ dictionary = \"campaigns\", probability = 0.5 }}\n\
             \"query.agent\" = {{ dictionary = \"agents\", probability = 0.5 }}\n",
            agent_ids.join(", ")
        ),
    )
    .unwrap();

    run_schemathesis(&st, &http, &dir, "anonymous", &[]);

    // The same coordinator with a read token: requests without it are
    // refused (401, documented), requests with it answer as before.
    c.set_config(
        "read_tokens",
        &format!("[\"{}\"]", hex::encode(Sha256::digest(TOKEN.as_bytes()))),
    );
    c.kill9();
    c.restart();
    let bearer = format!("Authorization: Bearer {TOKEN}");
    run_schemathesis(&st, &http, &dir, "read_token", &[&bearer]);
    drop(agents);
}
