//! Reading back from ClickHouse the results retention removed from sled
//! (`store/retention.rs`), so `ListResults` (`vantagectl results`,
//! `vantagectl export`) answers the same whether a result is still in sled
//! or only in ClickHouse: the same `StoredResult`s (the signed envelope as
//! received, the agent, when it was received), in the same order.
//!
//! Only this coordinator's rows (`coordinator` column) numbered up to the
//! last sequence number retention removed are read from ClickHouse; the
//! rest comes from sled. Pages are keyed on the id or the sequence number
//! and read with `FINAL`, so a row inserted twice is read once.

use std::collections::VecDeque;

use vantage_proto::v1::{SignedResult, StoredResult};

use crate::config::ClickHouseSink;
use crate::errors::ServiceError;

/// Rows per ClickHouse read.
const PAGE: usize = 2_000;

/// The order of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Id,
    Seq,
}

/// Where the results sled no longer holds are.
#[derive(Clone)]
pub struct Source {
    pub c: ClickHouseSink,
    pub coordinator: String,
    /// Rows numbered up to this were removed from sled.
    pub upto_seq: u64,
}

/// Filters, each a UUID or empty.
#[derive(Clone, Default)]
pub struct Filter {
    pub campaign: String,
    pub task: String,
    pub agent: String,
}

/// A SQL string literal.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The query of one page after `after_seq` / `after_id`.
pub fn page_query(
    src: &Source,
    f: &Filter,
    order: Order,
    after_seq: u64,
    after_id: &str,
) -> String {
    let mut w = vec![
        format!("coordinator = {}", quote(&src.coordinator)),
        format!("seq <= {}", src.upto_seq),
    ];
    match order {
        Order::Seq => w.push(format!("seq > {after_seq}")),
        Order::Id if !after_id.is_empty() => w.push(format!("id > {}", quote(after_id))),
        Order::Id => {}
    }
    for (col, v) in [
        ("campaign", &f.campaign),
        ("task", &f.task),
        ("agent", &f.agent),
    ] {
        if !v.is_empty() {
            w.push(format!("{col} = {}", quote(v)));
        }
    }
    format!(
        "SELECT seq, id, agent, received_us, measurement, signature FROM {}.{} FINAL \
         WHERE {} ORDER BY {} LIMIT {PAGE} FORMAT RowBinary",
        src.c.database,
        src.c.table,
        w.join(" AND "),
        match order {
            Order::Id => "id",
            Order::Seq => "seq",
        }
    )
}

/// One row read back: its number, id and the stored result.
pub type Row = (u64, String, StoredResult);

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.b.len() < n {
            return Err("a ClickHouse row is cut short".into());
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| "u64")?))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let mut len = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            len |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                let n = usize::try_from(len).map_err(|_| "a ClickHouse string is too long")?;
                return Ok(self.take(n)?.to_vec());
            }
        }
        Err("a ClickHouse string length does not end".into())
    }
}

/// The rows of a RowBinary answer to [`page_query`].
pub fn parse_page(body: &[u8]) -> Result<Vec<Row>, String> {
    let mut r = Reader { b: body };
    let mut out = Vec::new();
    while !r.b.is_empty() {
        let seq = r.u64()?;
        let id = String::from_utf8(r.bytes()?).map_err(|_| "an id is not text")?;
        let agent_id = String::from_utf8(r.bytes()?).map_err(|_| "an agent id is not text")?;
        let received_us = r.u64()? as i64;
        let measurement = r.bytes()?;
        let signature = r.bytes()?;
        out.push((
            seq,
            id,
            StoredResult {
                envelope: Some(SignedResult {
                    measurement: measurement.into(),
                    signature: signature.into(),
                }),
                agent_id,
                received_us,
                seq: 0,
            },
        ));
    }
    Ok(out)
}

/// The rows of `src` matching `f`, in `order`, after `after_seq` (in
/// sequence order), read a page at a time on `rt` from a blocking thread.
pub struct Pages {
    src: Source,
    f: Filter,
    order: Order,
    after_seq: u64,
    after_id: String,
    buf: VecDeque<Row>,
    done: bool,
    rt: tokio::runtime::Handle,
}

impl Pages {
    pub fn new(
        src: Source,
        f: Filter,
        order: Order,
        after_seq: u64,
        rt: tokio::runtime::Handle,
    ) -> Pages {
        Pages {
            src,
            f,
            order,
            after_seq,
            after_id: String::new(),
            buf: VecDeque::new(),
            done: false,
            rt,
        }
    }

    fn fill(&mut self) -> Result<(), ServiceError> {
        let q = page_query(
            &self.src,
            &self.f,
            self.order,
            self.after_seq,
            &self.after_id,
        );
        let body = self
            .rt
            .block_on(super::query_any(&self.src.c, &q))
            .map_err(|e| {
                ServiceError::Unavailable(format!("reading old results from ClickHouse: {e}"))
            })?;
        let rows = parse_page(&body).map_err(ServiceError::Internal)?;
        if rows.len() < PAGE {
            self.done = true;
        }
        if let Some((seq, id, _)) = rows.last() {
            self.after_seq = *seq;
            self.after_id = id.clone();
        }
        self.buf.extend(rows);
        Ok(())
    }
}

impl Iterator for Pages {
    type Item = Result<Row, ServiceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

/// A TabSeparated field with ClickHouse's escapes undone.
fn unescape(f: &str) -> String {
    let mut out = String::with_capacity(f.len());
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The aggregation query over this coordinator's verdict rows (`FINAL`:
/// each run's latest revision).
pub fn aggregation_sql(
    c: &ClickHouseSink,
    coordinator: &str,
    conditions: &[String],
    x: &str,
    y: Option<&str>,
) -> String {
    let mut w = vec![format!("coordinator = {}", quote(coordinator))];
    w.extend(conditions.iter().cloned());
    let axes = match y {
        Some(y) => format!(
            "{} AS x, {} AS y",
            crate::query::axis_sql(x),
            crate::query::axis_sql(y)
        ),
        None => format!("{} AS x, '' AS y", crate::query::axis_sql(x)),
    };
    format!(
        "SELECT {axes}, countIf(status = 'ok'), countIf(status = 'blocked'), \
         countIf(status = 'down'), countIf(status NOT IN ('ok', 'blocked', 'down')), count() \
         FROM {}.{} FINAL WHERE {} GROUP BY x, y ORDER BY x, y FORMAT TabSeparated",
        c.database,
        super::clickhouse::verdict_table(c),
        w.join(" AND ")
    )
}

/// Cells from the answer to [`aggregation_sql`].
pub(crate) fn parse_cells(body: &[u8], two_axes: bool) -> Result<Vec<crate::query::Cell>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8")?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let [x, y, ok, blocked, down, inconclusive, all] = f[..] else {
            return Err(format!("an aggregation row of {} fields", f.len()));
        };
        let n = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{v:?} is not a count"))
        };
        out.push(crate::query::Cell {
            x: unescape(x),
            y: two_axes.then(|| unescape(y)),
            counts: crate::query::Counts {
                ok_count: n(ok)?,
                blocked_count: n(blocked)?,
                down_count: n(down)?,
                inconclusive_count: n(inconclusive)?,
                measurement_count: n(all)?,
            },
        });
    }
    Ok(out)
}

/// Verdict counts by the axes from ClickHouse. Call from a blocking thread
/// of the runtime.
pub(crate) fn aggregation(
    c: &ClickHouseSink,
    coordinator: &str,
    conditions: &[String],
    x: &str,
    y: Option<&str>,
) -> Result<Vec<crate::query::Cell>, ServiceError> {
    let q = aggregation_sql(c, coordinator, conditions, x, y);
    let body = tokio::runtime::Handle::current()
        .block_on(super::query_any(c, &q))
        .map_err(|e| ServiceError::Unavailable(format!("ClickHouse: {e}")))?;
    parse_cells(&body, y.is_some()).map_err(ServiceError::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_query_this_coordinator_up_to_the_removed_and_parse_back() {
        let c: crate::config::Config = crate::config::Config::parse(
            "version = 1\nlisten = \"127.0.0.1:1\"\nadvertise = []\n[sink.clickhouse]\n\
             urls = [\"http://127.0.0.1:8123\"]\n",
        )
        .unwrap();
        let src = Source {
            c: c.sink.clickhouse.unwrap(),
            coordinator: "it's".into(),
            upto_seq: 70,
        };
        let f = Filter {
            campaign: "0190a8b2-0000-7000-8000-0000000000c1".into(),
            ..Default::default()
        };
        let q = page_query(&src, &f, Order::Seq, 5, "");
        assert!(q.contains("WHERE coordinator = 'it\\'s' AND seq <= 70 AND seq > 5 AND campaign = '0190a8b2-0000-7000-8000-0000000000c1' ORDER BY seq"), "{q}");
        let q = page_query(&src, &Filter::default(), Order::Id, 0, "x");
        assert!(q.contains("AND id > 'x' ORDER BY id LIMIT"), "{q}");

        // A row as the sink writes the columns read here.
        let mut body = Vec::new();
        body.extend_from_slice(&9u64.to_le_bytes());
        for s in [&b"id-1"[..], b"agent"] {
            body.push(s.len() as u8);
            body.extend_from_slice(s);
        }
        body.extend_from_slice(&77i64.to_le_bytes());
        body.push(3);
        body.extend_from_slice(b"abc");
        body.push(0);
        let rows = parse_page(&body).unwrap();
        assert_eq!(rows.len(), 1);
        let (seq, id, sr) = &rows[0];
        assert_eq!(
            (*seq, id.as_str(), sr.agent_id.as_str(), sr.received_us),
            (9, "id-1", "agent", 77)
        );
        assert_eq!(&sr.envelope.as_ref().unwrap().measurement[..], b"abc");
        body.pop();
        assert!(parse_page(&body).is_err(), "a cut row is an error");
    }
}
