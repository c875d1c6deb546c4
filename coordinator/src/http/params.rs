//! Query-string parameters: unknown or repeated names, bad numbers, times
//! and ids are refused with a sentence naming the parameter (400), never a
//! panic.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use base64::Engine;

use super::HttpError;

/// The parsed query string of one request.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

/// What the extractor hands a handler.
pub(crate) type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

impl Params {
    /// Checks the names against `known`; each may appear once.
    pub(crate) fn parse(q: RawQuery, known: &[&str]) -> Result<Params, HttpError> {
        let Query(pairs) = q.map_err(|e| HttpError::bad(format!("bad query string: {e}")))?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !known.contains(&k.as_str()) {
                return Err(HttpError::bad(format!(
                    "unknown parameter {k:?} (known: {})",
                    known.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(p, _)| p == k) {
                return Err(HttpError::bad(format!("parameter {k:?} is given twice")));
            }
        }
        Ok(Params { pairs })
    }

    /// The value, or `None` when absent or empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    pub(crate) fn u32(&self, name: &str) -> Result<Option<u32>, HttpError> {
        self.get(name)
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    HttpError::bad(format!("{name} must be a non-negative integer, not {v:?}"))
                })
            })
            .transpose()
    }

    /// A count between 1 and `max`; `default` when absent.
    pub(crate) fn limit(&self, name: &str, default: usize, max: usize) -> Result<usize, HttpError> {
        match self.u32(name)? {
            None => Ok(default),
            Some(0) => Err(HttpError::bad(format!("{name} must be at least 1"))),
            Some(n) if n as usize > max => {
                Err(HttpError::bad(format!("{name} must be at most {max}")))
            }
            Some(n) => Ok(n as usize),
        }
    }

    /// A time as Unix microseconds: RFC 3339 (`2024-05-01T12:00:00Z`), a
    /// date (`2024-05-01`, midnight UTC) or an integer of Unix microseconds.
    pub(crate) fn time_us(&self, name: &str) -> Result<Option<i64>, HttpError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        parse_time_us(v).map(Some).ok_or_else(|| {
            HttpError::bad(format!(
                "{name} must be an RFC 3339 time (2024-05-01T12:00:00Z), a date (2024-05-01) \
                 or Unix microseconds, not {v:?}"
            ))
        })
    }

    /// A UUID (agent, campaign, task id).
    pub(crate) fn id(&self, name: &str) -> Result<Option<(String, [u8; 16])>, HttpError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        crate::store::uuid_key(v)
            .map(|k| Some((v.to_ascii_lowercase(), k)))
            .ok_or_else(|| HttpError::bad(format!("{name} must be a UUID, not {v:?}")))
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

pub(crate) fn parse_time_us(v: &str) -> Option<i64> {
    if let Ok(n) = v.parse::<i64>() {
        return Some(n);
    }
    let text = if v.len() == 10 {
        format!("{v}T00:00:00Z")
    } else {
        v.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&text).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_micros()).ok()
}

/// UTC day (`2024-05-01`) and hour (`2024-05-01T12:00Z`) of a time.
/// Times are clamped to 0001..9999 first: humantime cannot format years
/// past 9999 (its Display errors, and `to_string` panics; found by the
/// `http_params` fuzz target).
pub(crate) fn day_hour(us: i64) -> (String, String) {
    /// 9999-12-31T23:59:59.999999Z in Unix microseconds.
    const MAX_US: i64 = 253_402_300_799_999_999;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us.clamp(0, MAX_US) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    let day = s.get(..10).unwrap_or("").to_string();
    let hour = format!("{}:00Z", s.get(..13).unwrap_or(""));
    (day, hour)
}

/// Opaque pagination cursor: the last result key, base64url.
pub(crate) fn encode_cursor(id: &[u8; 16]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

pub(crate) fn decode_cursor(c: &str) -> Result<[u8; 16], HttpError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| HttpError::bad("cursor is not one this API returned"))
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
