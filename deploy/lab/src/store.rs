//! The lab's app store: nginx on `store.lab.example` (198.19.3.38, HTTP
//! and HTTPS with the lab certificate) answering Apple's iTunes Search
//! `lookup` format per storefront, `GET /lookup?id=<digits>&country=<cc>`
//! (or `bundleId=<bundle id>` instead of `id`, as the `app_store` probe
//! asks when its input has no app id):
//!
//! ```text
//! {"resultCount":1,"results":[{"trackId":1000000001,"trackName":"Lab VPN",...}]}
//! {"resultCount":0,"results":[]}
//! ```
//!
//! The catalogue is files: `STATE/store/<cc>/<id>.json` is app `<id>`'s
//! answer in storefront `<cc>`, and `STATE/store/<cc>/bundle/<bundle
//! id>.json` the same answer by bundle id. nginx maps the query arguments,
//! each checked by a strict regex (two lowercase letters; 1-12 digits
//! without a leading zero; a bundle id of letters, digits, `.`, `-` and
//! `_` starting with a letter or digit; exactly one of `id` and
//! `bundleId`; no `country` is `us`, as Apple's default), to that path and
//! serves it, or the empty answer when no such file exists, or 400 for
//! anything else. [`add`] and [`remove`] change a storefront while the lab
//! runs (nginx caches no file, so the next lookup sees it): the store's own
//! doing, like the 2017 removal of VPN apps from Apple's China store. The
//! firewall does nothing to it.

use std::path::{Path, PathBuf};

use serde::Serialize;
use vantage_proto::v1::{probe_input::Kind, AppStoreInput, ProbeInput};

use crate::plan;
use crate::sys::{self, LabError, Result};

/// One app as `lookup` lists it (the fields a client reads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub track_id: u64,
    pub track_name: String,
    pub seller_name: String,
    pub version: String,
    pub bundle_id: String,
}

fn app(track_id: u64, track_name: &str, bundle_id: &str) -> App {
    App {
        track_id,
        track_name: track_name.into(),
        seller_name: "Vantage Lab".into(),
        version: "1.0".into(),
        bundle_id: bundle_id.into(),
    }
}

/// A VPN app, listed in `us` and `cn` when the lab is built.
pub fn vpn_app() -> App {
    app(1_000_000_001, "Lab VPN", "example.lab.vpn")
}

/// A messenger, listed in `us` and `cn`.
pub fn messenger_app() -> App {
    app(1_000_000_002, "Lab Messenger", "example.lab.messenger")
}

/// A news app, listed in `us` only (already gone from `cn`).
pub fn news_app() -> App {
    app(1_000_000_003, "Lab News", "example.lab.news")
}

/// The catalogue `up` writes: (storefront, app).
pub fn initial() -> Vec<(&'static str, App)> {
    vec![
        ("us", vpn_app()),
        ("cn", vpn_app()),
        ("us", messenger_app()),
        ("cn", messenger_app()),
        ("us", news_app()),
    ]
}

/// A `lookup` answer, its fields in Apple's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Lookup<'a> {
    result_count: usize,
    results: &'a [&'a App],
}

/// The answer for a listed app.
pub fn listed_body(app: &App) -> String {
    let body = Lookup {
        result_count: 1,
        results: &[app],
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// The answer for an app the storefront does not list.
pub const UNLISTED_BODY: &str = r#"{"resultCount":0,"results":[]}"#;

/// The answer to arguments that fail the checks.
pub const INVALID_BODY: &str =
    r#"{"errorMessage":"Invalid value(s) for key(s): [country, id]","queryParameters":{}}"#;

/// Where the catalogue lives.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("store")
}

/// The same rule as nginx's: two lowercase ASCII letters.
fn check_storefront(storefront: &str) -> Result<()> {
    if storefront.len() == 2 && storefront.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(LabError::Precondition(format!(
            "storefront {storefront:?} is not two lowercase letters"
        )))
    }
}

/// The same rule as nginx's: letters, digits, `.`, `-`, `_`, at most 155,
/// starting with a letter or digit (so never `.` or `..`).
fn check_bundle_id(bundle_id: &str) -> Result<()> {
    let ok = (1..=155).contains(&bundle_id.len())
        && bundle_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bundle_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LabError::Precondition(format!(
            "bundle id {bundle_id:?} is not letters, digits, '.', '-' and '_'"
        )))
    }
}

/// The two files that list `app` in `storefront`: by id, by bundle id.
fn app_paths(state_dir: &Path, storefront: &str, app: &App) -> Result<[PathBuf; 2]> {
    check_storefront(storefront)?;
    check_bundle_id(&app.bundle_id)?;
    let cc = dir(state_dir).join(storefront);
    Ok([
        cc.join(format!("{}.json", app.track_id)),
        cc.join("bundle").join(format!("{}.json", app.bundle_id)),
    ])
}

/// Lists `app` in `storefront` (each file written whole, then renamed
/// into place, so a lookup never reads half a file).
pub fn add(state_dir: &Path, storefront: &str, app: &App) -> Result<()> {
    for path in app_paths(state_dir, storefront, app)? {
        let tmp = path.with_extension("json.tmp");
        sys::mkdir(path.parent().unwrap_or(state_dir))?;
        sys::write(&tmp, listed_body(app))?;
        std::fs::rename(&tmp, &path).map_err(|source| LabError::Io {
            context: format!("cannot rename {} into place", tmp.display()),
            source,
        })?;
    }
    Ok(())
}

/// Takes `app` out of `storefront`; fails when it is not listed.
pub fn remove(state_dir: &Path, storefront: &str, app: &App) -> Result<()> {
    for path in app_paths(state_dir, storefront, app)? {
        std::fs::remove_file(&path).map_err(|source| LabError::Io {
            context: format!(
                "cannot remove app {} from storefront {storefront}",
                app.track_id
            ),
            source,
        })?;
    }
    Ok(())
}

/// Writes the [`initial`] catalogue.
pub fn seed(state_dir: &Path) -> Result<()> {
    for (storefront, app) in initial() {
        add(state_dir, storefront, &app)?;
    }
    Ok(())
}

/// The `app_store` probe input for `app` in storefront `cn` against `us`,
/// asked of this store over HTTPS, named by the app.
pub fn probe_input(app: &App) -> ProbeInput {
    ProbeInput {
        name: app.track_name.clone(),
        kind: Some(Kind::AppStore(AppStoreInput {
            app_id: app.track_id.to_string(),
            bundle_id: app.bundle_id.clone(),
            storefront: "cn".into(),
            control_storefront: "us".into(),
            base_url: format!("https://{}", plan::STORE_NAME),
        })),
    }
}

/// The lookup URL of app `track_id` in `storefront`, over `scheme`.
pub fn lookup_url(scheme: &str, track_id: u64, storefront: &str) -> String {
    format!(
        "{scheme}://{}/lookup?id={track_id}&country={storefront}",
        plan::STORE_NAME
    )
}

/// The store's nginx `map` (http level) and `server` block.
pub fn nginx_server(state_dir: &Path) -> String {
    let root = dir(state_dir);
    format!(
        r#"  map "$arg_country/$arg_id/$arg_bundleId" $vantage_lab_store_file {{
    default "";
    "~^(?<store_cc>[a-z][a-z])/(?<store_id>{id})/$" "/$store_cc/$store_id.json";
    "~^/(?<store_us_id>{id})/$" "/us/$store_us_id.json";
    "~^(?<store_bcc>[a-z][a-z])//(?<store_bundle>{bundle})$" "/$store_bcc/bundle/$store_bundle.json";
    "~^//(?<store_us_bundle>{bundle})$" "/us/bundle/$store_us_bundle.json";
  }}
  server {{
    listen {ip}:80;
    listen {ip}:443 ssl;
    server_name {name};
    root {root};
    default_type application/json;
    location = /lookup {{
      if ($vantage_lab_store_file = "") {{ return 400 '{invalid}'; }}
      try_files $vantage_lab_store_file @unlisted;
    }}
    location @unlisted {{ return 200 '{unlisted}'; }}
    location / {{ return 404 '{{"errorMessage":"not found"}}'; }}
  }}
"#,
        ip = plan::STORE_IP,
        name = plan::STORE_NAME,
        root = root.display(),
        invalid = INVALID_BODY,
        unlisted = UNLISTED_BODY,
        id = "[1-9][0-9]{0,11}",
        bundle = "[A-Za-z0-9][A-Za-z0-9._-]{0,154}",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_remove_change_one_storefront() {
        let tmp = std::env::temp_dir().join(format!("vl-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        seed(&tmp).unwrap();
        let (vpn, news) = (vpn_app(), news_app());
        let files = |cc: &str, app: &App| app_paths(&tmp, cc, app).unwrap();
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap();
        let [by_id, by_bundle] = files("cn", &vpn);
        let body = read(&by_id);
        assert!(body.starts_with(r#"{"resultCount":1,"results":[{"trackId":1000000001,"#));
        assert_eq!(read(&by_bundle), body);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["resultCount"], 1);
        assert_eq!(v["results"][0]["trackId"], 1_000_000_001u64);
        assert_eq!(v["results"][0]["bundleId"], "example.lab.vpn");
        assert_eq!(v["results"][0]["sellerName"], "Vantage Lab");
        assert!(files("cn", &news).iter().all(|p| !p.exists()));
        remove(&tmp, "cn", &vpn).unwrap();
        assert!(files("cn", &vpn).iter().all(|p| !p.exists()));
        assert!(files("us", &vpn).iter().all(|p| p.exists()));
        assert!(remove(&tmp, "cn", &vpn).is_err(), "not listed");
        add(&tmp, "cn", &vpn).unwrap();
        assert_eq!(read(&by_id), body);
        for bad in ["CN", "c", "chn", "../", "c/"] {
            assert!(add(&tmp, bad, &vpn).is_err(), "{bad}");
        }
        for bad in ["", "..", ".x", "-x", "a/b", "a b", &"a".repeat(156)] {
            let app = App {
                bundle_id: bad.to_string(),
                ..vpn.clone()
            };
            assert!(add(&tmp, "cn", &app).is_err(), "{bad:?}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
        let unlisted: serde_json::Value = serde_json::from_str(UNLISTED_BODY).unwrap();
        assert_eq!(
            unlisted,
            serde_json::json!({"resultCount": 0, "results": []})
        );
    }

    #[test]
    fn nginx_validates_both_arguments() {
        let conf = nginx_server(Path::new("/run/vantage-lab/x"));
        assert!(conf.contains("root /run/vantage-lab/x/store;"));
        assert!(conf.contains("[a-z][a-z])/(?<store_id>[1-9][0-9]{0,11})/$"));
        assert!(conf.contains("(?<store_bundle>[A-Za-z0-9][A-Za-z0-9._-]{0,154})$"));
        assert!(conf.contains(&format!("listen {}:443 ssl;", plan::STORE_IP)));
        // No single quote in the bodies: they sit in '...' strings.
        assert!(!INVALID_BODY.contains('\'') && !UNLISTED_BODY.contains('\''));
    }
}
