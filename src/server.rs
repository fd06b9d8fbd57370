//! The accept loop: one hyper HTTP/1 connection per TCP stream, with the limits that keep a
//! small server alive under hostile clients, and graceful shutdown.
//!
//! Limits: a cap on connections (excess clients wait in the kernel's backlog), a time limit
//! for each request head (`client_timeout`: slow-header clients are cut off), the same limit
//! on a client that stops accepting response bytes (slow readers), a size limit on heads and
//! their number of headers (431), and a deadline for handlers (`request_timeout`, then 503).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::App;
use crate::http::HttpError;
use crate::routes;

/// Largest request head hyper buffers; beyond it the answer is 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
/// How long in-flight requests may take to finish after a shutdown signal. With the final
/// database steps after it (see `lib.rs`), a shutdown takes at most 15 s even when the
/// database hangs: the longest a request waits for the database is `request_timeout`
/// (10 s by default), and one that has not finished by now is answered by nobody.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

/// Serves connections until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Also bounds the wait between keep-alive requests.
        .header_read_timeout(app.config.client_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        // max_buf_size only bounds a head that arrives in pieces; this bounds it whole.
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);

    let connection_slots = Arc::new(Semaphore::new(app.config.max_connections as usize));
    let (request_timeout, client_timeout) = (app.config.request_timeout, app.config.client_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // Waiting for a free connection slot before accepting leaves excess clients in the
        // kernel's backlog instead of in our memory.
        let slot = tokio::select! {
            slot = connection_slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: pause instead of spinning.
                    tracing::warn!(error = %crate::logging::Chain(&error), "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let peer = crate::forwarded::Peer(peer.ip());
        let service = service_fn(move |request: hyper::Request<_>| {
            let app = app.clone();
            async move {
                let response =
                    tokio::time::timeout(request_timeout, routes::dispatch(&app, request, peer))
                        .await
                        .unwrap_or_else(|_| {
                            HttpError::unavailable("request timed out").into_response()
                        });
                Ok::<_, Infallible>(response)
            }
        });
        let connection = graceful.watch(builder.serve_connection(
            TokioIo::new(StallGuard::new(stream, client_timeout)),
            service,
        ));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %crate::logging::Chain(&error), "connection ended with an error");
            }
            drop(slot);
        });
    }

    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: finishing in-flight requests"
    );
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time; closing them");
    }
}

/// A client the server waits on to write must take at least this much a second, judged
/// over each `client_timeout`: a client trickling a download would otherwise hold its
/// stream (a permit, memory) for as long as it likes. Mobile networks manage well over
/// 100 KiB/s.
pub const MIN_READ_RATE: u64 = 16 * 1024;

/// Guards the write side of a connection against clients that do not read. A write that
/// makes no progress for `limit` fails (a client that stopped reading), and so does a
/// client that keeps the server waiting most of a `limit`-long window while taking less
/// than [`MIN_READ_RATE`] (a client reading at a trickle). Judged by what the socket
/// accepts, which is what the client takes once the kernel's buffers are full: so it holds
/// whatever the buffers' size. A client that is never waited on is never judged.
struct StallGuard<T> {
    inner: T,
    limit: Duration,
    stalled_since: Option<Pin<Box<Sleep>>>,
    window: RateWindow,
}

/// One window of the read-rate rule.
struct RateWindow {
    started: Instant,
    accepted: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
}

impl RateWindow {
    fn new(now: Instant) -> RateWindow {
        RateWindow {
            started: now,
            accepted: 0,
            waited: Duration::ZERO,
            waiting_since: None,
        }
    }

    /// A write finished with `accepted` bytes at `now`: whether the window shows a reader
    /// too slow to keep.
    fn too_slow(&mut self, accepted: usize, now: Instant, limit: Duration) -> bool {
        if let Some(since) = self.waiting_since.take() {
            self.waited += now - since;
        }
        self.accepted += accepted as u64;
        let elapsed = now - self.started;
        if elapsed < limit {
            return false;
        }
        let slow = self.waited >= elapsed / 2
            && (self.accepted as f64) < MIN_READ_RATE as f64 * elapsed.as_secs_f64();
        *self = RateWindow::new(now);
        slow
    }
}

impl<T> StallGuard<T> {
    fn new(inner: T, limit: Duration) -> StallGuard<T> {
        StallGuard {
            inner,
            limit,
            stalled_since: None,
            window: RateWindow::new(Instant::now()),
        }
    }

    /// Passes a write-side poll through; one that stays pending too long becomes an error.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Pending => {
                self.window.waiting_since.get_or_insert_with(Instant::now);
                self.check_stall(cx).map(Err)
            }
            ready => {
                self.stalled_since = None;
                ready
            }
        }
    }

    /// Like [`StallGuard::watch`] for a write, which also counts towards the read rate.
    fn watch_write(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match self.watch(cx, poll) {
            Poll::Ready(Ok(written))
                if self.window.too_slow(written, Instant::now(), self.limit) =>
            {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client reads too slowly",
                )))
            }
            other => other,
        }
    }

    /// Called when the inner write is pending: errors once the stall has lasted too long.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let deadline = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        self.watch_write(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        self.watch_write(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickling_reader_is_judged_too_slow_and_a_fast_or_idle_one_is_not() {
        let limit = Duration::from_secs(30);
        let start = Instant::now();
        // Waited on most of the window, 2.8 KB/s accepted.
        let mut trickle = RateWindow::new(start);
        trickle.waiting_since = Some(start);
        assert!(!trickle.too_slow(1024, start + Duration::from_secs(10), limit));
        trickle.waiting_since = Some(start + Duration::from_secs(10));
        assert!(trickle.too_slow(84 * 1024, start + limit, limit));
        // Waited on as much, but 100 KiB/s accepted: a slow network, not an attack.
        let mut slow_network = RateWindow::new(start);
        slow_network.waiting_since = Some(start);
        assert!(!slow_network.too_slow(3000 * 1024, start + limit, limit));
        // Little accepted but never waited on: a client with little to read.
        let mut idle = RateWindow::new(start);
        assert!(!idle.too_slow(100, start + limit, limit));
        // Each window is judged on its own.
        assert_eq!(idle.accepted, 0);
    }
}
