//! Query-string parameters: unknown or repeated names, bad numbers, times
//! and ids are refused with a sentence naming the parameter (400), never a
//! panic.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;

use crate::errors::ServiceError;
#[cfg(test)]
use crate::query::fields::parse_time_us;
pub(crate) use crate::query::fields::{day_hour, decode_cursor, encode_cursor, Fields as Params};

/// What the extractor hands a handler.
pub(crate) type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

impl Params {
    /// Checks the names against `known`; each may appear once.
    pub(crate) fn parse(q: RawQuery, known: &[&str]) -> Result<Params, ServiceError> {
        let Query(pairs) =
            q.map_err(|e| ServiceError::invalid(format!("bad query string: {e}")))?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !known.contains(&k.as_str()) {
                return Err(ServiceError::invalid(format!(
                    "unknown parameter {k:?} (known: {})",
                    known.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(p, _)| p == k) {
                return Err(ServiceError::invalid(format!(
                    "parameter {k:?} is given twice"
                )));
            }
            if pairs[i].1.is_empty() {
                return Err(ServiceError::invalid(format!(
                    "parameter {k:?} is empty (leave it out instead)"
                )));
            }
        }
        Ok(Params::new(pairs))
    }
}

/// Parses a query string the way the handlers do and calls every accessor
/// on every name (for the fuzz target in `fuzz/`): it must return, never
/// panic.
#[doc(hidden)]
pub fn exercise(query: &str) {
    const KNOWN: [&str; 11] = [
        "agent", "campaign", "task", "country", "kind", "since", "until", "limit", "cursor",
        "status", "format",
    ];
    let Ok(uri) = format!("/api/v1/results?{query}").parse::<axum::http::Uri>() else {
        return;
    };
    let Ok(p) = Params::parse(Query::try_from_uri(&uri), &KNOWN) else {
        return;
    };
    for k in KNOWN {
        let _ = (p.string(k), p.u32(k), p.limit(k, 100, 1000), p.id(k));
        if let Ok(Some(t)) = p.time_us(k) {
            let _ = day_hour(t);
        }
        if let Some(c) = p.get(k) {
            let _ = decode_cursor(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_three_forms() {
        assert_eq!(parse_time_us("1000"), Some(1000));
        assert_eq!(parse_time_us("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_time_us("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_time_us("yesterday"), None);
        assert_eq!(parse_time_us("2024-13-45"), None);
        assert_eq!(parse_time_us("2024-02-30"), None);
        assert_eq!(parse_time_us("2024-02-29"), Some(1_709_164_800_000_000));
        assert_eq!(parse_time_us("2023-02-29"), None);
        assert_eq!(
            parse_time_us("1970-01-01t01:00:01.0000019+01:00"),
            Some(1_000_001)
        );
        assert_eq!(parse_time_us("1969-12-31T23:59:59Z"), Some(-1_000_000));
        assert_eq!(parse_time_us("0000-01-01"), Some(-62_167_219_200_000_000));
        assert_eq!(
            parse_time_us("-999999999999999999"),
            Some(-999_999_999_999_999_999)
        );
        for bad in [
            "1970-01-01T00:00:01",
            "1970-01-01 00:00:01Z",
            "1970-01-01T24:00:00Z",
            "1970-01-01T00:00:00.Z",
            "1970-01-01T00:00:00+1:00",
            "9999999999999999999",
            "1970-1-01",
        ] {
            assert_eq!(parse_time_us(bad), None, "{bad}");
        }
        let (d, h) = day_hour(86_400_000_000 + 3_600_000_000 * 5 + 7);
        assert_eq!(
            (d.as_str(), h.as_str()),
            ("1970-01-02", "1970-01-02T05:00Z")
        );
    }

    #[test]
    fn far_future_times_do_not_panic() {
        // Fuzz regression (http_params): "status=888888888888888888".
        let (d, _) = day_hour(888_888_888_888_888_888);
        assert_eq!(d, "9999-12-31");
        assert_eq!(day_hour(i64::MAX).0, "9999-12-31");
        assert_eq!(day_hour(i64::MIN).0, "1970-01-01");
        exercise("status=888888888888888888");
        exercise("since=9223372036854775807&until=-9223372036854775808");
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let id = [9u8; 16];
        assert_eq!(decode_cursor(&encode_cursor(&id)).unwrap(), id);
        assert!(decode_cursor("!!").is_err());
        assert!(decode_cursor("AAAA").is_err());
    }
}
