//! The `app_store` kind end to end: a store written here serves the iTunes
//! Search `lookup` format per storefront on 127.0.0.2; a real coordinator
//! and real agents (consenting to app_store, private targets allowed, as
//! the other e2e tests allow loopback) run a campaign comparing the cn
//! storefront with us. An app listed in us only is blocked
//! (`store.removed`), one listed in both is ok, one listed in neither is
//! down, and each target's key carries its storefront.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Query;
use axum::http::StatusCode;

use crate::harness::*;

/// (app id, storefronts that list it).
const APPS: [(&str, &[&str]); 3] = [
    ("1000000001", &["us"]),
    ("1000000002", &["us", "cn"]),
    ("1000000003", &[]),
];

/// The store's answer to `/lookup?id=..&country=..`.
async fn lookup(Query(q): Query<HashMap<String, String>>) -> (StatusCode, String) {
    let (Some(id), Some(country)) = (q.get("id"), q.get("country")) else {
        return (StatusCode::BAD_REQUEST, "id and country, please".into());
    };
    let listed = APPS
        .iter()
        .any(|(app, fronts)| app == id && fronts.contains(&country.as_str()));
    let results = if listed {
        serde_json::json!([{
            "wrapperType": "software",
            "trackId": id.parse::<u64>().unwrap_or_default(),
            "trackName": format!("App {id}"),
            "sellerName": "Example Seller",
            "version": "1.0",
            "bundleId": format!("org.example.app{id}"),
        }])
    } else {
        serde_json::json!([])
    };
    let n = results.as_array().map_or(0, Vec::len);
    let body = serde_json::json!({"resultCount": n, "results": results});
    (StatusCode::OK, body.to_string())
}

#[test]
fn storefront_listings_become_verdicts() {
    let rt = runtime();
    let store = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.2:0")
            .await
            .expect("bind the store");
        let addr = l.local_addr().unwrap();
        let app = axum::Router::new().route("/lookup", axum::routing::get(lookup));
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}")
    });

    let c = Coordinator::init().start();
    let mut fleet = c.enroll_agents(&FLEET);
    for a in &mut fleet {
        let consent = LAB_CONFIG.replace("\"dns\"]", "\"dns\", \"app_store\"]");
        assert_ne!(consent, LAB_CONFIG, "the lab config lists dns last");
        std::fs::write(a.dir.join("agent.toml"), consent).expect("agent.toml");
        a.start();
    }
    c.wait_connected(&fleet, Duration::from_secs(30));

    let targets: String = APPS
        .iter()
        .map(|(id, _)| {
            format!(
                "[[targets]]\nname = \"App {id}\"\napp_store = {{ app_id = \"{id}\", \
                 storefront = \"CN\", control_storefront = \"us\", base_url = \"{store}/\" }}\n\n"
            )
        })
        .collect();
    let id = c.create_campaign(&campaign_spec("app-store", "10s", "", &targets));
    wait_until(Duration::from_secs(60), "campaign done", || {
        c.ctl_json(&["campaign", "status", &id])["campaign"]["state"] == "done"
    });

    let verdicts = c.ctl_json(&["verdicts", &id]);
    let rows = verdicts.as_array().expect("rows");
    assert_eq!(rows.len(), 6, "3 apps x 2 inside agents: {verdicts}");
    for r in rows {
        let target = r["target"].as_str().unwrap();
        let app = APPS
            .iter()
            .find(|(app, _)| target.starts_with(&format!("app_store {app}@cn control=us")))
            .unwrap_or_else(|| panic!("target {target:?} names an app and its storefront"));
        let want = match app.1 {
            ["us"] => ("blocked", "store.removed"),
            [] => ("down", ""),
            _ => ("ok", ""),
        };
        assert_eq!(
            (r["status"].as_str(), r["mechanism"].as_str().unwrap_or("")),
            (Some(want.0), want.1),
            "{r}"
        );
        assert_eq!(r["kind"], "app_store");
        assert_eq!(r["name"], format!("App {}", app.0));
    }

    // The signed results carry both lookups, with what the store said.
    let lines = c.ctl_ok(&["--output", "jsonl", "results", &id]);
    let mut seen = 0;
    for l in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let m = &v["measurement"];
        let lookups = m["app_store"]["lookups"].as_array().expect("lookups");
        let fronts: Vec<&str> = lookups
            .iter()
            .map(|l| l["storefront"].as_str().unwrap())
            .collect();
        assert_eq!(fronts, ["cn", "us"], "{m}");
        for l in lookups {
            assert_eq!(l["status"], 200, "{l}");
            assert_eq!(l["body_sha256"].as_str().map(str::len), Some(64), "{l}");
        }
        if m["input"]["app_store"]["app_id"] == "1000000001" {
            assert_eq!(lookups[1]["listed"], true, "{m}");
            assert_eq!(lookups[1]["track_name"], "App 1000000001");
            assert_eq!(lookups[1]["seller_name"], "Example Seller");
        }
        seen += 1;
    }
    assert_eq!(seen, 9, "3 apps x 3 agents");
}
