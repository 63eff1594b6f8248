//! The accept loop. Each connection is served by hyper; the API can ask for its connection to
//! be dropped (a reset, or a lost answer), which closes the socket with a TCP reset.
//!
//! Gleap documents range filters in their literal form (`?createdAt>=2024-01-01`), which
//! hyper refuses (`<` and `>` are not allowed in a URI) before any route sees it: the bytes
//! of each request line are read through [`EscapeTargets`], which percent-encodes them
//! (`%3E=`), as a client that encodes its query would have sent them.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::api::ConnectionKill;

/// Serves `router` on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(task) = connection(stream, router.clone()) {
                        connections.spawn(task);
                    }
                }
                // Out of file descriptors and the like: give the system a moment.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            _ = shutdown.changed() => break,
        }
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}

/// The task serving one connection.
fn connection(
    stream: TcpStream,
    router: Router,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let _ = stream.set_nodelay(true);
    // A second handle on the socket, to set a zero linger when the connection is dropped on
    // purpose, so the peer sees a reset rather than an orderly close.
    let std_stream = stream.into_std().ok()?;
    let handle = std_stream.try_clone().ok()?;
    let stream = TcpStream::from_std(std_stream).ok()?;
    let kill = Arc::new(Notify::new());
    let service_kill = kill.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectionKill(service_kill.clone()));
        let router = router.clone();
        async move {
            Ok::<_, Infallible>(
                router
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|e| match e {}),
            )
        }
    });
    Some(async move {
        let served = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(EscapeTargets::new(stream)), service);
        tokio::select! {
            _ = served => {}
            _ = kill.notified() => {
                let _ = socket2::SockRef::from(&handle).set_linger(Some(Duration::ZERO));
            }
        }
        drop(handle);
    })
}

/// Bytes a request target may hold that `http::Uri` refuses: percent-encoded on the way in.
const ESCAPED: &[u8] = b"<>\"{}|\\^`";
/// Header lines longer than this are not parsed (the rest of the connection passes as it is).
const MAX_HEADER_LINE: usize = 16 * 1024;

/// Where a connection's bytes stand in HTTP/1.1 framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// In a request line (`start`: nothing but line breaks so far).
    RequestLine { start: bool },
    /// In the header lines.
    Headers,
    /// In a body of this many more bytes.
    Body(u64),
    /// Framing this reader does not follow (chunked bodies): bytes pass unchanged.
    Passthrough,
}

/// Reads a connection, percent-encoding [`ESCAPED`] bytes in request lines; everything else
/// (headers, bodies) passes unchanged. Follows `Content-Length` framing from request to
/// request on a kept-alive connection.
pub struct EscapeTargets<S> {
    inner: S,
    framing: Framing,
    /// The header line being read.
    line: Vec<u8>,
    content_length: u64,
    chunked: bool,
    /// Bytes read and rewritten, not yet handed out.
    out: std::collections::VecDeque<u8>,
}

impl<S> EscapeTargets<S> {
    pub fn new(inner: S) -> Self {
        EscapeTargets {
            inner,
            framing: Framing::RequestLine { start: true },
            line: Vec::new(),
            content_length: 0,
            chunked: false,
            out: std::collections::VecDeque::new(),
        }
    }

    /// Rewrites bytes read from the connection into `self.out`.
    fn rewrite(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match self.framing {
                Framing::Passthrough => self.out.push_back(b),
                Framing::Body(n) => {
                    self.out.push_back(b);
                    self.framing = if n > 1 {
                        Framing::Body(n - 1)
                    } else {
                        Framing::RequestLine { start: true }
                    };
                }
                Framing::RequestLine { start } => {
                    if ESCAPED.contains(&b) {
                        self.out.extend(format!("%{b:02X}").bytes());
                    } else {
                        self.out.push_back(b);
                    }
                    if b == b'\n' && !start {
                        self.framing = Framing::Headers;
                        self.line.clear();
                        self.content_length = 0;
                        self.chunked = false;
                    } else if b != b'\r' && b != b'\n' {
                        self.framing = Framing::RequestLine { start: false };
                    }
                }
                Framing::Headers => {
                    self.out.push_back(b);
                    if b != b'\n' {
                        self.line.push(b);
                        if self.line.len() > MAX_HEADER_LINE {
                            self.framing = Framing::Passthrough;
                        }
                        continue;
                    }
                    let line = String::from_utf8_lossy(&self.line)
                        .trim()
                        .to_ascii_lowercase();
                    self.line.clear();
                    if line.is_empty() {
                        self.framing = if self.chunked {
                            Framing::Passthrough
                        } else if self.content_length > 0 {
                            Framing::Body(self.content_length)
                        } else {
                            Framing::RequestLine { start: true }
                        };
                    } else if let Some(v) = line.strip_prefix("content-length:") {
                        match v.trim().parse() {
                            Ok(n) => self.content_length = n,
                            Err(_) => self.framing = Framing::Passthrough,
                        }
                    } else if let Some(v) = line.strip_prefix("transfer-encoding:")
                        && v.contains("chunked")
                    {
                        self.chunked = true;
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EscapeTargets<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.out.is_empty() {
            let mut raw = [0u8; 8192];
            let mut raw_buf = ReadBuf::new(&mut raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw_buf) {
                Poll::Ready(Ok(())) => {
                    let filled = raw_buf.filled();
                    if filled.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    let filled = filled.to_vec();
                    this.rewrite(&filled);
                }
                other => return other,
            }
        }
        let n = buf.remaining().min(this.out.len());
        let chunk: Vec<u8> = this.out.drain(..n).collect();
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EscapeTargets<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(chunks: &[&[u8]]) -> String {
        let mut e = EscapeTargets::new(tokio::io::empty());
        for c in chunks {
            e.rewrite(c);
        }
        String::from_utf8(e.out.into_iter().collect()).unwrap()
    }

    #[test]
    fn request_lines_are_escaped_headers_and_bodies_are_not() {
        let body = r#"{"title":"a<b>c"}"#;
        let two = format!(
            "GET /v3/sessions?createdAt>=2024-01-01&bugId<5 HTTP/1.1\r\nHost: x\r\n\r\n\
             POST /v3/tickets HTTP/1.1\r\nContent-Length: {}\r\nX-A: <kept>\r\n\r\n{body}\
             GET /v3/tickets?updatedAt<=2024 HTTP/1.1\r\n\r\n",
            body.len()
        );
        let want = format!(
            "GET /v3/sessions?createdAt%3E=2024-01-01&bugId%3C5 HTTP/1.1\r\nHost: x\r\n\r\n\
             POST /v3/tickets HTTP/1.1\r\nContent-Length: {}\r\nX-A: <kept>\r\n\r\n{body}\
             GET /v3/tickets?updatedAt%3C=2024 HTTP/1.1\r\n\r\n",
            body.len()
        );
        assert_eq!(rewritten(&[two.as_bytes()]), want);
        // Split anywhere, the same.
        let bytes = two.as_bytes();
        for cut in [1, 17, 60, 90, bytes.len() - 3] {
            assert_eq!(
                rewritten(&[&bytes[..cut], &bytes[cut..]]),
                want,
                "cut at {cut}"
            );
        }
        // A chunked body is not followed: the rest passes unchanged.
        let chunked = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<a>b>\r\n0\r\n\r\nGET /y?a>b HTTP/1.1\r\n";
        assert!(rewritten(&[chunked.as_bytes()]).ends_with("GET /y?a>b HTTP/1.1\r\n"));
    }
}
