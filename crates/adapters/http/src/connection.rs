//! Every request head on a connection has a deadline.
//!
//! actix-http times out only the first request head of a connection (`client_request_timeout`):
//! once a keep-alive connection has served a request, the next head may trickle in forever, one
//! byte at a time, and an unread chunked body left behind by a refused request is drained with
//! no deadline at all. [`Guarded`] sits between the socket and the HTTP dispatcher and closes
//! the connection when the bytes that start a request (anything read after a response, or on a
//! fresh connection) do not complete a head (an empty line) within [`HEAD_TIMEOUT`]. Bodies are
//! not its business: the routes that read them put their own deadline on them
//! (`body::BodyReader`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a request head may take from its first byte. The same as actix-http's deadline for
/// the first head of a connection.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The interim answer actix-http writes before reading a body sent with `Expect: 100-continue`;
/// the request it belongs to is still being received.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Connections closed because a request head came too slowly, shared by every connection.
#[derive(Debug, Default)]
pub(crate) struct SlowHeads(AtomicU64);

impl SlowHeads {
    pub(crate) fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where the connection is in receiving a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests (or before the first): nothing of the next one has arrived.
    Idle,
    /// A head is arriving; `line_end` is how far into an empty line (`\n`, `\n\r`) the bytes
    /// read so far end.
    Head { line_end: u8 },
    /// The head is complete; the body (if any) is the route's business.
    Body,
}

/// A socket whose request heads must arrive within [`HEAD_TIMEOUT`].
#[derive(Debug)]
pub(crate) struct Guarded<T> {
    io: T,
    phase: Phase,
    deadline: Option<Pin<Box<Sleep>>>,
    slow_heads: Arc<SlowHeads>,
}

impl<T> Guarded<T> {
    pub(crate) fn new(io: T, slow_heads: Arc<SlowHeads>) -> Self {
        Self {
            io,
            phase: Phase::Idle,
            deadline: None,
            slow_heads,
        }
    }

    /// Follows the bytes just read: starts the deadline at the first byte of a request, and
    /// lifts it once the head is complete.
    fn observe(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut line_end = match self.phase {
            Phase::Body => return,
            Phase::Idle => {
                let deadline = Instant::now() + HEAD_TIMEOUT;
                match &mut self.deadline {
                    Some(sleep) => sleep.as_mut().reset(deadline),
                    None => self.deadline = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
                0
            }
            Phase::Head { line_end } => line_end,
        };
        for &byte in bytes {
            // A head ends with an empty line: `\n` then `\n`, with an optional `\r` before each.
            line_end = match (line_end, byte) {
                (1 | 2, b'\n') => {
                    self.phase = Phase::Body;
                    return;
                }
                (_, b'\n') => 1,
                (1, b'\r') => 2,
                _ => 0,
            };
        }
        self.phase = Phase::Head { line_end };
    }

    fn head_overdue(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(self.phase, Phase::Head { .. })
            && self
                .deadline
                .as_mut()
                .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Checked before reading too: a head trickling in never leaves a read pending.
        if this.head_overdue(cx) {
            this.slow_heads.0.fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not complete in time",
            )));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            this.observe(&buf.filled()[before..]);
            if matches!(this.phase, Phase::Head { .. }) {
                // Registers the wake-up at the deadline while the head is incomplete.
                let _ = this.head_overdue(cx);
            }
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf != CONTINUE {
            // A response: whatever arrives next starts the next request.
            this.phase = Phase::Idle;
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if bufs.iter().any(|b| !b.is_empty()) {
            this.phase = Phase::Idle;
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream, duplex};

    use super::*;

    fn pair() -> (Guarded<DuplexStream>, DuplexStream, Arc<SlowHeads>) {
        let (server, client) = duplex(64 * 1024);
        let slow = Arc::new(SlowHeads::default());
        (Guarded::new(server, Arc::clone(&slow)), client, slow)
    }

    async fn read_some(guarded: &mut Guarded<DuplexStream>) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; 1024];
        let n = guarded.read(&mut buf).await?;
        buf.truncate(n);
        Ok(buf)
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_trickling_in_is_cut_after_the_timeout_on_any_request_of_the_connection() {
        let (mut server, mut client, slow) = pair();
        // A first request, quick, and its response: the connection is now between requests.
        client
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_some(&mut server).await.unwrap();
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        // The next head, a byte a second.
        let trickle = tokio::spawn(async move {
            for byte in b"POST / HTTP/1.1\r\nX-Slow: yes" {
                client.write_all(&[*byte]).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            client
        });
        let started = Instant::now();
        let error = loop {
            match read_some(&mut server).await {
                Ok(_) => {}
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(
            (HEAD_TIMEOUT..HEAD_TIMEOUT + Duration::from_secs(2)).contains(&took),
            "{took:?}"
        );
        assert_eq!(slow.count(), 1);
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_head_frees_the_body_and_an_idle_connection_from_the_deadline() {
        let (mut server, mut client, slow) = pair();
        client
            .write_all(b"POST / HTTP/1.1\nContent-Length: 4\n\nab")
            .await
            .unwrap();
        read_some(&mut server).await.unwrap();
        // The body's rest comes late: not the connection's business, no error.
        tokio::time::sleep(HEAD_TIMEOUT * 3).await;
        client.write_all(b"cd").await.unwrap();
        assert_eq!(read_some(&mut server).await.unwrap(), b"cd");
        // An interim 100-continue does not end the request; the answer does.
        server.write_all(CONTINUE).await.unwrap();
        server
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        // Idle between requests: nothing to time out (keep-alive is actix-http's).
        tokio::time::sleep(HEAD_TIMEOUT * 3).await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(read_some(&mut server).await.is_ok());
        assert_eq!(slow.count(), 0);
    }

    #[test]
    fn the_end_of_a_head_is_found_across_reads_in_either_line_ending() {
        let slow = Arc::new(SlowHeads::default());
        for chunks in [
            vec![&b"GET / HTTP/1.1\r\nA: b\r"[..], b"\n", b"\r", b"\n"],
            vec![b"GET / HTTP/1.1\nA: b\n\n"],
            vec![b"GET / HTTP/1.1\r\n\r\nbody\n\nmore"],
        ] {
            let mut guarded = Guarded::new((), Arc::clone(&slow));
            guarded.phase = Phase::Head { line_end: 0 };
            for chunk in chunks {
                guarded.observe(chunk);
            }
            assert_eq!(guarded.phase, Phase::Body);
        }
        let mut guarded = Guarded::new((), slow);
        guarded.phase = Phase::Head { line_end: 0 };
        guarded.observe(b"GET / HTTP/1.1\r\nA: b\r\n");
        assert!(
            matches!(guarded.phase, Phase::Head { .. }),
            "one line end is not a head"
        );
    }
}
