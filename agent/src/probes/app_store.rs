//! `app_store` probe: whether an app is listed in a store's storefront, by
//! the store's public lookup API (Apple's iTunes Search `lookup` format:
//! `GET {base_url}/lookup?id=<app_id>&country=<storefront>`, or
//! `bundleId=` when no id is given). Looks the tested storefront up, then
//! the control storefront, each over the `http` probe's own TCP/TLS
//! client (WebPKI-verified as a browser would, the agent's trust
//! configuration included) and records per storefront the status, the
//! SHA-256 of the raw body, and whether the app is listed, with its name,
//! seller, version, bundle id and track id.
//!
//! What the store answers is data: a status other than 200, or a body that
//! is not a lookup answer (malformed JSON, a block page, a body over
//! [`MAX_BODY_BYTES`]), is the lookup's failure
//! `unknown_failure: app_store: ...`, never a panic.
//!
//! Target policy: as for `http` (see `target.rs`): a forbidden literal host
//! in `base_url` is a refusal; a forbidden resolved address or redirect
//! target is the failure `unknown_failure: forbidden_target: ...`.

use serde_json::Value;
use vantage_proto::failure::{failure, op};
use vantage_proto::v1::{
    measurement, AppStoreInput, AppStoreLookup, AppStoreResult, Failure, HttpInput,
};

use super::{http, measured, ProbeContext, Probed, Steps};

/// Most body bytes read per lookup. An answer for one app is a few KiB
/// (its description is the longest field); a body past this is not one.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest text kept from a listing's fields (names, seller, version).
const MAX_FIELD_CHARS: usize = 256;

/// Runs the `app_store` probe.
pub async fn run(input: &AppStoreInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let mut lookups = Vec::new();
    let storefronts = std::iter::once(&input.storefront)
        .chain(Some(&input.control_storefront).filter(|s| !s.is_empty()));
    let n = storefronts.clone().count() as u32;
    for (i, storefront) in storefronts.enumerate() {
        // Each lookup may use its share of the time left, so a blackholed
        // tested storefront leaves room for the control one.
        let mut own = ctx.clone();
        own.deadline = std::time::Instant::now() + ctx.remaining() / (n - i as u32);
        lookups.push(lookup(input, storefront, &own, &mut steps).await?);
    }
    measured(
        measurement::Result::AppStore(AppStoreResult { lookups }),
        steps,
    )
}

/// One storefront's lookup. `Err` is a refusal (a forbidden literal host).
async fn lookup(
    input: &AppStoreInput,
    storefront: &str,
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<AppStoreLookup, String> {
    let url = input.lookup_url(storefront);
    let request = HttpInput {
        url: url.clone(),
        max_body_bytes: MAX_BODY_BYTES as u64 + 1,
        ..Default::default()
    };
    let (h, body) = http::fetch_keeping(&request, None, ctx, steps, MAX_BODY_BYTES + 1).await?;
    let mut out = AppStoreLookup {
        storefront: storefront.to_string(),
        url,
        tls: h.tls.clone(),
        ..Default::default()
    };
    if let Some(last) = h.chain.last() {
        out.status = last.status;
        out.body_sha256 = last.body_sha256.clone();
        out.body_length = last.body_length;
        out.body_truncated = last.body_truncated || last.body_length > MAX_BODY_BYTES as u64;
    }
    if let Some(f) = h.failure.filter(|f| !f.failure.is_empty()) {
        out.failure = Some(f);
        return Ok(out);
    }
    if out.status != 200 {
        out.failure = Some(store_failure(
            &format!("HTTP status {}", out.status),
            op::HTTP_ROUND_TRIP,
        ));
        return Ok(out);
    }
    if out.body_truncated {
        out.failure = Some(store_failure(
            &format!(
                "lookup answer longer than the {} bytes read",
                out.body_length.min(MAX_BODY_BYTES as u64)
            ),
            op::READ,
        ));
        return Ok(out);
    }
    match parse(&body, input) {
        Ok(answer) => {
            out.result_count = answer.result_count;
            if let Some(l) = answer.listing {
                out.listed = true;
                out.track_id = l.track_id;
                out.track_name = l.track_name;
                out.seller_name = l.seller_name;
                out.version = l.version;
                out.bundle_id = l.bundle_id;
            }
        }
        Err(why) => out.failure = Some(store_failure(&why, op::READ)),
    }
    Ok(out)
}

/// `unknown_failure: app_store: <why>` at `operation`.
fn store_failure(why: &str, operation: &str) -> Failure {
    failure(&format!("unknown_failure: app_store: {why}"), operation)
}

/// What a lookup answer says about the app asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The answer's `resultCount` (saturated).
    pub result_count: u32,
    /// The result that is the app, if one is.
    pub listing: Option<Listing>,
}

/// A listed app's fields, as the store gave them (each cut to 256 characters).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub track_id: u64,
    pub track_name: String,
    pub seller_name: String,
    pub version: String,
    pub bundle_id: String,
}

/// Parses a lookup answer (`{"resultCount": N, "results": [{"trackId": ..,
/// "trackName": .., "sellerName": .., "version": .., "bundleId": ..}]}`)
/// and finds the app: the result whose `trackId` is the input's `app_id`,
/// or whose `bundleId` is its `bundle_id` (without regard to case). `Err`
/// says why the body is not a lookup answer. Fields of unexpected types in
/// other results are ignored; nothing here panics on any input.
pub fn parse(body: &[u8], input: &AppStoreInput) -> Result<Answer, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "malformed lookup answer: {}",
            cut(&e.to_string(), MAX_FIELD_CHARS)
        )
    })?;
    let o = v
        .as_object()
        .ok_or("malformed lookup answer: not a JSON object")?;
    let results = o
        .get("results")
        .and_then(Value::as_array)
        .ok_or("malformed lookup answer: no \"results\" array")?;
    let result_count = match o.get("resultCount") {
        None => results.len() as u64,
        Some(n) => n
            .as_u64()
            .ok_or("malformed lookup answer: \"resultCount\" is not a count")?,
    };
    let app_id: Option<u64> = input.app_id.parse().ok();
    let text = |r: &Value, k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .map(|s| cut(s, MAX_FIELD_CHARS))
            .unwrap_or_default()
    };
    let listing = results.iter().find_map(|r| {
        let track_id = r.get("trackId").and_then(Value::as_u64);
        let bundle_id = r.get("bundleId").and_then(Value::as_str);
        let by_id = app_id.is_some() && track_id == app_id;
        let by_bundle = !input.bundle_id.is_empty()
            && bundle_id.is_some_and(|b| b.eq_ignore_ascii_case(&input.bundle_id));
        (by_id || by_bundle).then(|| Listing {
            track_id: track_id.unwrap_or_default(),
            track_name: text(r, "trackName"),
            seller_name: text(r, "sellerName"),
            version: text(r, "version"),
            bundle_id: text(r, "bundleId"),
        })
    });
    Ok(Answer {
        result_count: u32::try_from(result_count).unwrap_or(u32::MAX),
        listing,
    })
}

/// The first `max` characters of `s`.
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::test_support::{assert_forbidden_refusal, strict_ctx};
    use std::time::Duration;

    fn by_id(id: &str) -> AppStoreInput {
        AppStoreInput {
            app_id: id.into(),
            storefront: "cn".into(),
            control_storefront: "us".into(),
            ..Default::default()
        }
    }

    const ANSWER: &str = r#"{
 "resultCount":2,
 "results": [
  {"wrapperType":"software", "trackId":111, "trackName":"Other", "bundleId":"com.example.other"},
  {"kind":"software", "trackId":932747118, "trackName":"Shadowrocket VPN", "sellerName":"Example Ltd",
   "version":"2.3.1", "bundleId":"com.Example.VPN", "price":0.0, "genres":["Utilities"]}]
}"#;

    #[test]
    fn the_app_is_found_by_its_id_with_its_fields() {
        let a = parse(ANSWER.as_bytes(), &by_id("932747118")).unwrap();
        assert_eq!(a.result_count, 2);
        assert_eq!(
            a.listing,
            Some(Listing {
                track_id: 932747118,
                track_name: "Shadowrocket VPN".into(),
                seller_name: "Example Ltd".into(),
                version: "2.3.1".into(),
                bundle_id: "com.Example.VPN".into(),
            })
        );
        // Another app's answer does not list this one.
        let other = parse(ANSWER.as_bytes(), &by_id("5")).unwrap();
        assert_eq!((other.result_count, other.listing), (2, None));
    }

    #[test]
    fn the_app_is_found_by_its_bundle_id_without_regard_to_case() {
        let input = AppStoreInput {
            bundle_id: "com.example.vpn".into(),
            storefront: "cn".into(),
            ..Default::default()
        };
        let a = parse(ANSWER.as_bytes(), &input).unwrap();
        assert_eq!(a.listing.map(|l| l.track_id), Some(932747118));
    }

    #[test]
    fn an_empty_answer_lists_nothing() {
        let a = parse(br#"{"resultCount":0,"results":[]}"#, &by_id("1")).unwrap();
        assert_eq!(a, Answer::default());
        // resultCount is optional; results are what counts.
        let a = parse(br#"{"results":[{"trackId":1}]}"#, &by_id("1")).unwrap();
        assert_eq!(a.result_count, 1);
        assert!(a.listing.is_some());
    }

    #[test]
    fn hostile_bodies_are_failures_never_panics() {
        let deep = "[".repeat(100_000);
        let huge_count = r#"{"resultCount":1e400,"results":[]}"#;
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"\"results\"",
            b"<html><title>Blocked</title></html>",
            b"{\"resultCount\":1,\"results\":{}}",
            b"{\"resultCount\":-1,\"results\":[]}",
            b"{\"resultCount\":\"1\",\"results\":[]}",
            b"{\"resultCount\":1,\"results\":[",
            b"{\"results\":[]}\xff",
            b"\xef\xbb\xbf{\"results\":[]}",
            deep.as_bytes(),
            huge_count.as_bytes(),
        ] {
            let e = parse(body, &by_id("1")).expect_err(&String::from_utf8_lossy(body));
            assert!(e.starts_with("malformed lookup answer"), "{e}");
            assert!(e.chars().count() < 300, "{e}");
        }
    }

    #[test]
    fn odd_results_are_skipped_and_long_fields_cut() {
        let long = "x".repeat(10_000);
        let body = format!(
            r#"{{"resultCount":4294967296,"results":[1, null, "s", {{"trackId":"1"}},
               {{"trackId":-1}}, {{"trackId":1.5}},
               {{"trackId":1,"trackName":"{long}","sellerName":7,"version":null}}]}}"#
        );
        let a = parse(body.as_bytes(), &by_id("1")).unwrap();
        assert_eq!(a.result_count, u32::MAX);
        let l = a.listing.expect("the one well-formed result");
        assert_eq!(l.track_name.chars().count(), MAX_FIELD_CHARS);
        assert_eq!((l.seller_name.as_str(), l.version.as_str()), ("", ""));
    }

    #[test]
    fn lookup_urls_follow_the_itunes_format() {
        assert_eq!(
            by_id("932747118").lookup_url("cn"),
            "https://itunes.apple.com/lookup?id=932747118&country=cn"
        );
        let input = AppStoreInput {
            bundle_id: "com.example.vpn".into(),
            base_url: "http://127.0.0.1:8080/store/".into(),
            ..Default::default()
        };
        assert_eq!(
            input.lookup_url("us"),
            "http://127.0.0.1:8080/store/lookup?bundleId=com.example.vpn&country=us"
        );
    }

    /// A store on 127.0.0.1 answering each lookup by its `country=`:
    /// (status, body). Returns its base URL.
    async fn store(answer: fn(&str) -> (u16, &'static str)) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req);
                let country = head
                    .split("country=")
                    .nth(1)
                    .map_or("", |r| r.get(..2).unwrap_or(""));
                let (status, body) = answer(country);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/javascript\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        base
    }

    fn lookups(out: &crate::probes::ProbeOutput) -> &[AppStoreLookup] {
        match &out.result {
            measurement::Result::AppStore(a) => &a.lookups,
            other => panic!("expected app_store, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn both_storefronts_are_looked_up_over_http() {
        let base = store(|country| match country {
            "us" => (200, ANSWER),
            "cn" => (200, r#"{"resultCount":0,"results":[]}"#),
            "jp" => (503, "busy"),
            _ => (200, "<html>not json</html>"),
        })
        .await;
        let ctx = crate::probes::test_support::lab_ctx(Duration::from_secs(5));
        let input = AppStoreInput {
            base_url: base.clone(),
            ..by_id("932747118")
        };
        let out = run(&input, &ctx).await.expect("measured");
        let l = lookups(&out);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].storefront.as_str(), l[0].listed), ("cn", false));
        assert_eq!(
            (l[0].status, l[0].result_count, l[0].failure.clone()),
            (200, 0, None)
        );
        assert_eq!(l[0].url, format!("{base}/lookup?id=932747118&country=cn"));
        assert_eq!((l[1].storefront.as_str(), l[1].listed), ("us", true));
        assert_eq!(l[1].track_name, "Shadowrocket VPN");
        assert_eq!(l[1].body_length, ANSWER.len() as u64);
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ANSWER.as_bytes()));
        assert_eq!(l[1].body_sha256, digest);

        // An error status and a body that is not a lookup answer are
        // failures of their lookup, with what was read.
        let odd = AppStoreInput {
            storefront: "jp".into(),
            control_storefront: "de".into(),
            ..input
        };
        let out = run(&odd, &ctx).await.expect("measured");
        let l = lookups(&out);
        let f = l[0].failure.clone().expect("503 is a failure");
        assert_eq!(
            (f.failure.as_str(), f.operation.as_str(), l[0].status),
            (
                "unknown_failure: app_store: HTTP status 503",
                "http_round_trip",
                503
            )
        );
        let f = l[1].failure.clone().expect("html is a failure");
        assert!(
            f.failure
                .starts_with("unknown_failure: app_store: malformed"),
            "{f:?}"
        );
        assert_eq!(f.operation, "read");
        assert!(!l[1].body_sha256.is_empty() && !l[1].listed);
    }

    #[tokio::test]
    async fn a_forbidden_store_address_is_refused() {
        let input = AppStoreInput {
            base_url: "http://127.0.0.1:9".into(),
            ..by_id("1")
        };
        assert_forbidden_refusal(&run(&input, &strict_ctx(Duration::from_secs(2))).await);
    }
}
