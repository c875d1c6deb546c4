//! Filter values by name, as both faces receive them: the HTTP query
//! string, or a gRPC request's fields under the same names. Bad numbers,
//! times and ids are refused with a sentence naming the field
//! (`InvalidArgument`), never a panic.

use base64::Engine;

use crate::errors::ServiceError;

fn bad(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(msg.into())
}

/// Named values of one request (each name once; empty values are absent).
pub(crate) struct Fields {
    pub(crate) pairs: Vec<(String, String)>,
}

impl Fields {
    /// From (name, value) pairs; empty values count as absent.
    pub(crate) fn new(pairs: Vec<(String, String)>) -> Fields {
        Fields { pairs }
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

    pub(crate) fn u32(&self, name: &str) -> Result<Option<u32>, ServiceError> {
        self.get(name)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| bad(format!("{name} must be a non-negative integer, not {v:?}")))
            })
            .transpose()
    }

    /// A count between 1 and `max`; `default` when absent.
    pub(crate) fn limit(
        &self,
        name: &str,
        default: usize,
        max: usize,
    ) -> Result<usize, ServiceError> {
        match self.u32(name)? {
            None => Ok(default),
            Some(0) => Err(bad(format!("{name} must be at least 1"))),
            Some(n) if n as usize > max => Err(bad(format!("{name} must be at most {max}"))),
            Some(n) => Ok(n as usize),
        }
    }

    /// A time as Unix microseconds: RFC 3339 (`2024-05-01T12:00:00Z`), a
    /// date (`2024-05-01`, midnight UTC) or an integer of Unix microseconds.
    pub(crate) fn time_us(&self, name: &str) -> Result<Option<i64>, ServiceError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        parse_time_us(v).map(Some).ok_or_else(|| {
            bad(format!(
                "{name} must be an RFC 3339 time (2024-05-01T12:00:00Z), a date (2024-05-01) \
                 or Unix microseconds, not {v:?}"
            ))
        })
    }

    /// A UUID (agent, campaign, task id).
    pub(crate) fn id(&self, name: &str) -> Result<Option<(String, [u8; 16])>, ServiceError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        crate::store::uuid_key(v)
            .map(|k| Some((v.to_ascii_lowercase(), k)))
            .ok_or_else(|| bad(format!("{name} must be a UUID, not {v:?}")))
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

pub(crate) fn decode_cursor(c: &str) -> Result<[u8; 16], ServiceError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| bad("cursor is not one this API returned"))
}
