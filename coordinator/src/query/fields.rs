//! Filter values by name, as both faces receive them: the HTTP query
//! string, or a gRPC request's fields under the same names. Bad numbers,
//! times and ids are refused with a sentence naming the field
//! (`InvalidArgument`), never a panic.

use base64::Engine;

use crate::errors::ServiceError;

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
        self.number(name)
    }

    pub(crate) fn u64(&self, name: &str) -> Result<Option<u64>, ServiceError> {
        self.number(name)
    }

    /// A non-negative integer of type `T`; `None` when absent.
    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ServiceError> {
        self.get(name)
            .map(|v| {
                v.parse::<T>().map_err(|_| {
                    ServiceError::invalid(format!(
                        "{name} must be a non-negative integer, not {v:?}"
                    ))
                })
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
            Some(0) => Err(ServiceError::invalid(format!("{name} must be at least 1"))),
            Some(n) if n as usize > max => Err(ServiceError::invalid(format!(
                "{name} must be at most {max}"
            ))),
            Some(n) => Ok(n as usize),
        }
    }

    /// A time as Unix microseconds: RFC 3339 (`2024-05-01T12:00:00Z`), a
    /// date (`2024-05-01`, midnight UTC) or an integer of Unix microseconds
    /// ([`parse_time_us`]).
    pub(crate) fn time_us(&self, name: &str) -> Result<Option<i64>, ServiceError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        parse_time_us(v).map(Some).ok_or_else(|| {
            ServiceError::invalid(format!(
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
        uuid(v)
            .map(|k| Some((v.to_ascii_lowercase(), k)))
            .ok_or_else(|| ServiceError::invalid(format!("{name} must be a UUID, not {v:?}")))
    }
}

/// Unix microseconds as a time parameter: up to 18 digits, so it always
/// fits (the OpenAPI document carries this pattern).
pub(crate) const MICROS_PATTERN: &str = "^-?[0-9]{1,18}$";

/// A cursor this API returns: 16 bytes in unpadded base64url, whose last
/// character carries two bits and four zero bits.
pub(crate) const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]{21}[AQgw]$";

/// A time as Unix microseconds: [`MICROS_PATTERN`], an RFC 3339 full date
/// (midnight UTC) or an RFC 3339 date-time (`T` and `Z` either case, any
/// offset, fractions kept to the microsecond).
pub(crate) fn parse_time_us(v: &str) -> Option<i64> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().ok();
    }
    rfc3339_us(v)
}

/// Digits `b[r]` as a number (`None` unless all are ASCII digits).
fn number(b: &[u8], r: std::ops::Range<usize>) -> Option<i64> {
    let s = b.get(r).filter(|s| !s.is_empty())?;
    s.iter().try_fold(0i64, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// RFC 3339 `full-date` or `date-time` as Unix microseconds.
fn rfc3339_us(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-')) {
        return None;
    }
    let (y, mo, d) = (number(b, 0..4)?, number(b, 5..7)?, number(b, 8..10)?);
    if !(1..=12).contains(&mo) || !(1..=days_in_month(y, mo)).contains(&d) {
        return None;
    }
    let day_s = days_from_civil(y, mo, d) * 86_400;
    if b.len() == 10 {
        return Some(day_s * 1_000_000);
    }
    if !matches!(b.get(10), Some(b'T' | b't')) || !at(13, b':') || !at(16, b':') {
        return None;
    }
    let (h, mi, s) = (number(b, 11..13)?, number(b, 14..16)?, number(b, 17..19)?);
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = 19;
    let mut frac_us = 0;
    if at(19, b'.') {
        let end = 20 + b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
        let kept = end.min(26);
        frac_us = number(b, 20..kept)? * 10i64.pow((26 - kept) as u32);
        rest = end;
    }
    let offset_s = match b.get(rest..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (
                number(b, rest + 1..rest + 3)?,
                number(b, rest + 4..rest + 6)?,
            );
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    Some((day_s + h * 3600 + mi * 60 + s - offset_s) * 1_000_000 + frac_us)
}

/// A UUID as ids are written: hyphenated (36 characters), either case.
pub(crate) fn uuid(v: &str) -> Option<[u8; 16]> {
    if v.len() != 36 {
        return None;
    }
    crate::store::uuid_key(v)
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
        .ok_or_else(|| ServiceError::invalid("cursor is not one this API returned"))
}
