//! The optional HTTP listener for Prometheus (`metrics_listen` in the node
//! config): `GET /metrics` (or `HEAD`) answers the node's metrics; any other
//! path is 404, any other method 405. One request per connection, a request
//! head of at most `MAX_REQUEST` bytes, read within `READ_TIMEOUT`; at most
//! `MAX_CONNECTIONS` served at once, further ones are closed at once.

use super::handle::NodeHandle;
use super::metrics::CONTENT_TYPE;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub const MAX_REQUEST: usize = 8 * 1024;
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_CONNECTIONS: usize = 32;

/// Bind the listener; an address in use or not ours is a startup error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("metrics_listen {addr}: cannot listen for HTTP"))
}

/// Serve until `shutdown`.
pub async fn serve(listener: TcpListener, handle: NodeHandle, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics listener: too many connections, closing one");
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &handle).await {
                debug!(%peer, "metrics request: {e}");
            }
            drop(permit);
        });
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Metrics { head_only: bool },
    NotFound,
    MethodNotAllowed,
    Bad(&'static str),
}

/// Parse an HTTP/1.x request head (everything before the blank line).
pub fn parse_head(head: &[u8]) -> Request {
    let Ok(head) = std::str::from_utf8(head) else { return Request::Bad("request head is not UTF-8") };
    let line = head.split("\r\n").next().unwrap_or_default();
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (words.next(), words.next(), words.next(), words.next())
    else {
        return Request::Bad("request line is not METHOD TARGET VERSION");
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Bad("only HTTP/1.x is served");
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Request::NotFound;
    }
    match method {
        "GET" => Request::Metrics { head_only: false },
        "HEAD" => Request::Metrics { head_only: true },
        _ => Request::MethodNotAllowed,
    }
}

async fn answer(mut stream: TcpStream, handle: &NodeHandle) -> std::io::Result<()> {
    let request = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => parse_head(&head),
        Ok(Ok(None)) => Request::Bad("request head too large"),
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return respond(&mut stream, "408 Request Timeout", "text/plain", b"request not read in time\n", false)
                .await;
        }
    };
    match request {
        Request::Metrics { head_only } => {
            let text = handle.metrics_text();
            respond(&mut stream, "200 OK", CONTENT_TYPE, text.as_bytes(), head_only).await
        }
        Request::NotFound => {
            respond(&mut stream, "404 Not Found", "text/plain", b"not found; metrics are at /metrics\n", false).await
        }
        Request::MethodNotAllowed => {
            respond(&mut stream, "405 Method Not Allowed", "text/plain", b"only GET and HEAD\n", false).await
        }
        Request::Bad(why) => {
            let body = format!("{why}\n");
            respond(&mut stream, "400 Bad Request", "text/plain", body.as_bytes(), false).await
        }
    }
}

/// The request head, or `None` when it passes `MAX_REQUEST` bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(Some(buf));
        }
        if buf.len() > MAX_REQUEST {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before the request ended"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let allow = if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_routed_or_refused() {
        let cases: &[(&str, Request)] = &[
            ("GET /metrics HTTP/1.1\r\nHost: x", Request::Metrics { head_only: false }),
            ("GET /metrics?x=1 HTTP/1.0", Request::Metrics { head_only: false }),
            ("HEAD /metrics HTTP/1.1", Request::Metrics { head_only: true }),
            ("POST /metrics HTTP/1.1", Request::MethodNotAllowed),
            ("GET / HTTP/1.1", Request::NotFound),
            ("GET /metricsx HTTP/1.1", Request::NotFound),
            ("GET /metrics HTTP/2.0", Request::Bad("only HTTP/1.x is served")),
            ("GET /metrics", Request::Bad("request line is not METHOD TARGET VERSION")),
            ("GET  /metrics HTTP/1.1", Request::Bad("request line is not METHOD TARGET VERSION")),
        ];
        for (head, want) in cases {
            assert_eq!(&parse_head(head.as_bytes()), want, "{head:?}");
        }
        assert_eq!(parse_head(b"GET /\xff HTTP/1.1"), Request::Bad("request head is not UTF-8"));
    }
}
