//! A minimal blocking HTTP/1.1 GET, for the log's `/checkpoint` and tiles:
//! the load generator reads them back once its clock has stopped, and the
//! crash harness after every restart.
//!
//! The load itself goes over gRPC; these reads are few and untimed, one
//! request per connection (`Connection: close`), so a small std-only client
//! does: the crate's dependencies hold no HTTP client, and adding one for a
//! handful of GETs is not worth a new dependency. Sharing no code with the
//! server's HTTP stack, it also checks the tiles API as an outsider would.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// A log's base URL, split for plain HTTP.
#[derive(Debug, Clone)]
pub struct HttpLog {
    /// `host:port`, for the socket and the `Host` header.
    authority: String,
    /// Path prefix without the trailing slash, possibly empty.
    prefix: String,
}

impl HttpLog {
    /// Parses `http://host[:port][/prefix]`; anything else is refused,
    /// because this client speaks plain HTTP only.
    pub fn new(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
        Ok(Self {
            authority: if has_port {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            },
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    /// GETs `path` (no leading slash) and returns the body of a 200 answer.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let target = if self.prefix.is_empty() {
            format!("/{path}")
        } else {
            format!("/{}/{path}", self.prefix)
        };
        let fail = |e: &dyn std::fmt::Display| format!("GET {target}: {e}");
        let mut stream = TcpStream::connect(&self.authority).map_err(|e| fail(&e))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| fail(&e))?;
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.authority
        )
        .map_err(|e| fail(&e))?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(|e| fail(&e))?;
        parse_response(&raw).map_err(|e| fail(&e))
    }
}

/// The body of a complete `200` response read to the end of the
/// connection, de-chunked if need be.
fn parse_response(raw: &[u8]) -> Result<Vec<u8>, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete header block")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or("");
    if status != "200" {
        return Err(format!("HTTP status {status}"));
    }
    let body = &raw[split + 4..];
    let mut content_length = None;
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
            return dechunk(body);
        }
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse::<usize>().ok();
        }
    }
    match content_length {
        Some(len) if len != body.len() => Err(format!(
            "body is {} bytes, Content-Length says {len}",
            body.len()
        )),
        _ => Ok(body.to_vec()),
    }
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size line")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_prefix() {
        let log = HttpLog::new("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (log.authority.as_str(), log.prefix.as_str()),
            ("127.0.0.1:8080", "")
        );
        let log = HttpLog::new("http://logs.example/a/b/").unwrap();
        assert_eq!(
            (log.authority.as_str(), log.prefix.as_str()),
            ("logs.example:80", "a/b")
        );
        assert!(HttpLog::new("https://logs.example").is_err());
    }

    #[test]
    fn bodies_by_length_or_chunks_and_only_on_200() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(plain).unwrap(), b"hello");
        let short = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhello";
        assert!(
            parse_response(short).is_err(),
            "a cut-off body is not a body"
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), b"hello");
        let missing = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert!(parse_response(missing).is_err());
    }
}
