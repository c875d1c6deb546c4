//! The little HTTP/1.1 a ClickHouse sink needs: one POST per request on a
//! fresh connection (`Connection: close`), a body of bytes, an answer read
//! to its end (content length, chunked or until close). ClickHouse's HTTP
//! interface takes the query in the URL and the data in the body.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest answer read (a page of old results is a few MiB).
const MAX_ANSWER: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{url}: {detail}")]
    Io { url: String, detail: String },
    /// The server answered with an error status; ClickHouse's message.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// `http://host:port` split; a path is not allowed.
fn host_port(url: &str) -> Option<(&str, u16)> {
    let rest = url.strip_prefix("http://")?.trim_end_matches('/');
    if rest.contains('/') {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (rest, 80),
    };
    Some((host, port))
}

/// Percent-encodes a query-string value.
pub(crate) fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3 / 2);
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// POSTs `body` to `url` + `path_and_query` with basic auth; the answer's
/// body when the status is 200.
pub(crate) async fn post(
    url: &str,
    path_and_query: &str,
    auth: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, HttpError> {
    let io = |detail: String| HttpError::Io {
        url: url.to_string(),
        detail,
    };
    let (host, port) = host_port(url).ok_or_else(|| io("not an http://host:port URL".into()))?;
    let mut s = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| {
        io(format!(
            "no connection within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))
    })?
    .map_err(|e| io(format!("connect: {e}")))?;
    let _ = s.set_nodelay(true);
    let head = format!(
        "POST {path_and_query} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let exchange = async {
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        s.flush().await?;
        let mut answer = Vec::new();
        (&mut s)
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| io(format!("no answer within {} s", timeout.as_secs())))?
        .map_err(|e| io(e.to_string()))?;
    let (status, body) = parse_answer(&answer).map_err(|e| io(e.into()))?;
    if status == 200 {
        Ok(body)
    } else {
        Err(HttpError::Status {
            url: url.to_string(),
            status,
            body: String::from_utf8_lossy(&body)
                .trim()
                .chars()
                .take(2_000)
                .collect(),
        })
    }
}

/// Status and body of a whole HTTP/1.1 answer.
fn parse_answer(a: &[u8]) -> Result<(u16, Vec<u8>), &'static str> {
    let end = a
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer has no complete header")?;
    let head = std::str::from_utf8(&a[..end]).map_err(|_| "the answer's header is not text")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("the answer has no status line")?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    let rest = &a[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or("the answer is shorter than its length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut a: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    loop {
        let eol = a
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk has no size line")?;
        let size_text = std::str::from_utf8(&a[..eol]).map_err(|_| "a chunk size is not text")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "a chunk size is not hex")?;
        a = &a[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(a.get(..size).ok_or("a chunk is cut short")?);
        a = a.get(size + 2..).ok_or("a chunk is cut short")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_in_each_framing_and_bad_ones_are_errors() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(parse_answer(plain).unwrap(), (200, b"abc".to_vec()));
        let chunked = b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked).unwrap(), (500, b"abcde".to_vec()));
        let until_close = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(parse_answer(until_close).unwrap().1, b"all of it");
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"[..],
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc",
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn urls_and_values() {
        assert_eq!(
            host_port("http://127.0.0.1:8123"),
            Some(("127.0.0.1", 8123))
        );
        assert_eq!(host_port("http://h/"), Some(("h", 80)));
        assert_eq!(host_port("http://h:1/x"), None);
        assert_eq!(host_port("https://h:1"), None);
        assert_eq!(encode("SELECT 1, 'a'"), "SELECT%201%2C%20%27a%27");
    }
}
