//! The little HTTP/1.1 client the coordinator's outbound traffic needs:
//! the ClickHouse sink and webhooks. One request per fresh connection
//! (`Connection: close`), a body of bytes, an answer read to its end
//! (content length, chunked or until close); `https://` over rustls with
//! the roots the caller gives.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest answer read (a page of old results is a few MiB).
const MAX_ANSWER: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{url}: {detail}")]
    Io { url: String, detail: String },
    /// The server answered with an error status; its message.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// A parsed `http(s)://host[:port][/path?query]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Starts with `/`.
    pub(crate) path: String,
}

impl Url {
    /// Parses an absolute http or https URL; why not, when it is not one.
    pub(crate) fn parse(url: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(format!("{url:?}: credentials in the URL are not supported"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url:?}: the port {p:?} is not a number"))?,
            ),
            _ => (authority, if https { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c));
        if !valid || port == 0 {
            return Err(format!("{url:?} has no valid host and port"));
        }
        if path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(format!(
                "{url:?}: the path has spaces or control characters"
            ));
        }
        Ok(Url {
            https,
            host: host.to_string(),
            port,
            path,
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `http://host:port` split; a path is not allowed (the sink's servers).
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
    let (host, port) = host_port(url).ok_or_else(|| HttpError::Io {
        url: url.to_string(),
        detail: "not an http://host:port URL".into(),
    })?;
    let target = Url {
        https: false,
        host: host.to_string(),
        port,
        path: path_and_query.to_string(),
    };
    let headers = [("Authorization", format!("Basic {auth}"))];
    let (status, answer) = request(&target, &headers, body, timeout, None).await?;
    if status == 200 {
        Ok(answer)
    } else {
        Err(HttpError::Status {
            url: url.to_string(),
            status,
            body: String::from_utf8_lossy(&answer)
                .trim()
                .chars()
                .take(2_000)
                .collect(),
        })
    }
}

/// POSTs `body` to `url` with `headers`; the status and body of the
/// answer, whatever the status. `tls` is needed for an `https://` URL.
pub(crate) async fn request(
    url: &Url,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(u16, Vec<u8>), HttpError> {
    let shown = format!(
        "{}://{}{}",
        if url.https { "https" } else { "http" },
        url.host_header(),
        url.path
    );
    let io = |detail: String| HttpError::Io {
        url: shown.clone(),
        detail,
    };
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((url.host.as_str(), url.port)),
    )
    .await
    .map_err(|_| {
        io(format!(
            "no connection within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))
    })?
    .map_err(|e| io(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path,
        url.host_header(),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let answer = if url.https {
        let tls = tls.ok_or_else(|| io("no TLS configuration for an https URL".into()))?;
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| io(format!("TLS server name: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(tls.clone());
        let exchange = async {
            let s = connector.connect(name, tcp).await?;
            exchange(s, head.as_bytes(), body).await
        };
        tokio::time::timeout(timeout, exchange).await
    } else {
        tokio::time::timeout(timeout, exchange(tcp, head.as_bytes(), body)).await
    }
    .map_err(|_| io(format!("no answer within {} s", timeout.as_secs_f32())))?
    .map_err(|e| io(e.to_string()))?;
    parse_answer(&answer).map_err(|e| io(e.into()))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    s.write_all(head).await?;
    s.write_all(body).await?;
    s.flush().await?;
    let mut answer = Vec::new();
    (&mut s)
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut answer)
        .await?;
    Ok(answer)
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

    #[test]
    fn webhook_urls_parse_and_bad_ones_say_why() {
        let u = Url::parse("https://hooks.example.org/v/1?x=2").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "hooks.example.org", 443, "/v/1?x=2")
        );
        let u = Url::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!((u.https, u.port, u.path.as_str()), (false, 9000, "/"));
        let u = Url::parse("http://[::1]:81/h").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        assert_eq!(Url::parse("http://h?q=1").unwrap().path, "/?q=1");
        for bad in [
            "ftp://h/",
            "h:80",
            "http://",
            "http://:80/",
            "http://h:x/",
            "http://h:0/",
            "http://u:p@h/",
            "http://h/a b",
            "http://h/\r\nX: y",
            "http://h\r\n/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad:?}");
        }
    }
}
