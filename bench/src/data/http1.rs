//! The HTTP/1.1 client side of the load generator: one request, built once
//! and written as it is on every round trip, and a response parser that
//! knows where a response ends (Content-Length or chunked), so that a
//! keep-alive connection can carry the next request. The head is parsed by
//! `httparse` (hyper's parser); the body is not kept.

use anyhow::{Context, bail};

/// Longest response the parser accepts, head and body: the upstream
/// answers 64 bytes, anything near this is a broken path.
const MAX_RESPONSE: usize = 1 << 20;
/// Most header fields a response may have.
const MAX_HEADERS: usize = 64;

/// `GET /` naming `host`, keep-alive (HTTP/1.1's default).
pub(crate) fn request(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: causeway-bench\r\n\r\n").into_bytes()
}

/// A whole response at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// Bytes it takes, head and body.
    pub(crate) len: usize,
    /// The server closes the connection after it (`Connection: close`).
    pub(crate) close: bool,
}

impl Response {
    pub(crate) fn is_success(self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The response at the start of `buf`: `None` while it is incomplete, an
/// error when it cannot be one (or is one this client does not take: an
/// informational status, a body delimited only by the connection's end).
pub(crate) fn parse(buf: &[u8]) -> anyhow::Result<Option<Response>> {
    if buf.len() > MAX_RESPONSE {
        bail!("a response longer than {MAX_RESPONSE} bytes");
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf).context("not an HTTP/1.1 response")? {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) => n,
    };
    let status = resp.code.context("a response without a status")?;
    if (100..200).contains(&status) {
        bail!("an informational response ({status}) to a GET");
    }
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .context("an invalid Content-Length")?;
            if length.is_some_and(|l| l != v) {
                bail!("two different Content-Length fields");
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                bail!("a transfer coding other than chunked");
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let body = &buf[head..];
    let body_len = if status == 204 || status == 304 {
        Some(0)
    } else if chunked {
        chunked_len(body)?
    } else if let Some(n) = length {
        (body.len() >= n).then_some(n)
    } else {
        bail!("a response ({status}) with neither Content-Length nor chunked framing");
    };
    Ok(body_len.map(|n| Response {
        status,
        len: head + n,
        close,
    }))
}

/// Where a chunked body ends (after its last chunk and trailers), or
/// `None` while it is incomplete.
fn chunked_len(body: &[u8]) -> anyhow::Result<Option<usize>> {
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&body[at..]) else {
            return Ok(None);
        };
        let line = &body[at..at + eol];
        let digits = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or(line)
            .trim_ascii();
        let size = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.len() <= 8)
            .and_then(|d| usize::from_str_radix(d, 16).ok())
            .context("an invalid chunk size")?;
        at += eol + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(eol) = find_crlf(&body[at..]) else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some(at));
                }
            }
        }
        let end = at + size + 2;
        if end > MAX_RESPONSE {
            bail!("a chunked body longer than {MAX_RESPONSE} bytes");
        }
        if body.len() < end {
            return Ok(None);
        }
        if &body[end - 2..end] != b"\r\n" {
            bail!("a chunk not followed by CRLF");
        }
        at = end;
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// Reads one response from `s` into `buf` (cleared first), blocking.
pub(crate) fn read_blocking(
    s: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Response> {
    use std::io::Read;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).context("reading a response")?;
        if n == 0 {
            bail!("the path closed the connection before a whole response");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(r) = whole(buf)? {
            return Ok(r);
        }
    }
}

/// Reads one response from `s` into `buf` (cleared first).
pub(crate) async fn read(
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Response> {
    use tokio::io::AsyncReadExt;
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let n = s.read_buf(buf).await.context("reading a response")?;
        if n == 0 {
            bail!("the path closed the connection before a whole response");
        }
        if let Some(r) = whole(buf)? {
            return Ok(r);
        }
    }
}

/// The response in `buf` once complete; nothing may follow it, as no
/// second request was sent.
fn whole(buf: &[u8]) -> anyhow::Result<Option<Response>> {
    match parse(buf)? {
        Some(r) if r.len != buf.len() => bail!(
            "{} bytes after a response, with no request outstanding",
            buf.len() - r.len
        ),
        r => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn content_length_ends_the_response() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            parse(r).unwrap(),
            Some(Response {
                status: 200,
                len: r.len(),
                close: false
            })
        );
        assert_eq!(parse(&r[..r.len() - 1]).unwrap(), None);
        assert_eq!(parse(&r[..10]).unwrap(), None);
    }

    #[test]
    fn chunked_ends_after_the_last_chunk_and_trailers() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(parse(r).unwrap().unwrap().len, r.len());
        for cut in 1..40 {
            assert_eq!(parse(&r[..r.len() - cut]).unwrap(), None, "cut {cut}");
        }
        let t = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(parse(t).unwrap().unwrap().len, t.len());
        assert!(parse(&t[..t.len() - 2]).unwrap().is_none());
    }

    #[test]
    fn status_and_close_are_reported() {
        let r = b"HTTP/1.1 503 Service Unavailable\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n";
        let resp = parse(r).unwrap().unwrap();
        assert_eq!(
            (resp.status, resp.close, resp.is_success()),
            (503, true, false)
        );
        let r = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse(r).unwrap().unwrap().len, r.len());
    }

    #[test]
    fn responses_it_cannot_frame_are_errors() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\nuntil close"[..],
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(whole(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab").is_err());
    }
}
