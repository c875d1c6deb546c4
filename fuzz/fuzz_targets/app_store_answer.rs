//! Bodies as the app_store probe reads them from a store's lookup API (the
//! first byte chooses whether the app is asked for by id or by bundle id):
//! whatever the store, or whoever answers in its place, sends is an answer
//! or a failure reason, never a panic, and a listing's text stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_proto::v1::AppStoreInput;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let input = if first & 1 == 0 {
        AppStoreInput {
            app_id: "932747118".into(),
            storefront: "cn".into(),
            ..Default::default()
        }
    } else {
        AppStoreInput {
            bundle_id: "com.example.vpn".into(),
            storefront: "cn".into(),
            ..Default::default()
        }
    };
    match vantage_agent::probes::app_store::parse(body, &input) {
        Ok(answer) => {
            if let Some(l) = answer.listing {
                for field in [&l.track_name, &l.seller_name, &l.version, &l.bundle_id] {
                    assert!(field.chars().count() <= 256, "a field is cut at 256");
                }
            }
        }
        Err(why) => assert!(why.starts_with("malformed lookup answer"), "{why}"),
    }
});
