//! The accept loop: one hyper HTTP/1 connection per TCP stream, with the limits that keep a
//! small server alive under hostile clients, and graceful shutdown.
//!
//! Limits: a cap on connections (excess clients wait in the kernel's backlog), a time limit
//! for each request head and between keep-alive requests (`client_timeout`: slow-header and
//! idle clients are cut off, see [`Activity`]), the same limit on a client that stops
//! accepting response bytes (slow readers), a size limit on heads and their number of
//! headers (431), and a deadline for handlers (`request_timeout`, then 503).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::App;
use crate::http::{Body, HttpError};
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
        // hyper's head timer stays off (the head limit is `Activity`'s): it arms one for
        // every request head, a box and two timer-wheel updates a request.
        .header_read_timeout(None)
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
        let connection = Arc::new(Connection {
            app: app.clone(),
            peer: crate::forwarded::Peer(peer.ip()),
            activity: Activity::default(),
        });
        let service = {
            let connection = connection.clone();
            service_fn(move |request: hyper::Request<_>| {
                // This connection's own handle, not the app's: every request cloning one
                // `Arc<App>` made its count a cache line both cores fought over.
                let connection = connection.clone();
                async move {
                    let _request = connection.activity.request();
                    // Built in place: a handler future moved into a binding of its own, or
                    // into `within`'s arguments, would be stored twice in this one.
                    let handler =
                        std::pin::pin!(routes::dispatch(&connection.app, request, connection.peer));
                    Ok::<_, Infallible>(within(request_timeout, handler).await)
                }
            })
        };
        let served = graceful.watch(builder.serve_connection(
            TokioIo::new(StallGuard::new(stream, client_timeout, connection.clone())),
            service,
        ));
        tokio::spawn(async move {
            tokio::select! {
                biased;
                ended = served => if let Err(error) = ended {
                    tracing::debug!(error = %crate::logging::Chain(&error), "connection ended with an error");
                },
                // Dropping the connection closes it.
                () = connection.activity.quiet_for(client_timeout) => {
                    tracing::debug!("connection closed: no request head within the client timeout");
                }
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

/// What a connection's requests share.
struct Connection {
    app: Arc<App>,
    peer: crate::forwarded::Peer,
    activity: Activity,
}

/// Answers with `handler`'s response, or 503 once it has taken `limit`. The deadline is
/// armed only when the handler has to wait: most requests are answered from memory on
/// their first poll, and a timer for each of them was a clock read and a timer entry made
/// and dropped for nothing.
async fn within<F: Future<Output = hyper::Response<Body>>>(
    limit: Duration,
    mut handler: Pin<&mut F>,
) -> hyper::Response<Body> {
    if let Poll::Ready(response) =
        std::future::poll_fn(|cx| Poll::Ready(handler.as_mut().poll(cx))).await
    {
        return response;
    }
    tokio::time::timeout(limit, handler)
        .await
        .unwrap_or_else(|_| HttpError::unavailable("request timed out").into_response())
}

/// How many quarters of `client_timeout` a connection may stay quiet.
const QUIET_QUARTERS: u32 = 4;

/// Whether a connection is doing anything, for the head limit: a client must send each
/// request head, the first and every keep-alive one, within `client_timeout` of the
/// connection opening or its last response. One timer per connection looks every quarter
/// of that and closes a connection that showed no activity for four quarters in a row, so
/// a quiet client is closed between 1 and 1¼ `client_timeout` after its last activity.
///
/// Activity is a request starting or ending, or a response write the client accepted;
/// bytes of an unfinished head are not, so a client trickling one never counts as active.
/// A request in progress (bounded by `request_timeout`) always counts. Everything here is
/// touched by the connection's own task only: plain loads and stores, no shared counters.
#[derive(Default)]
struct Activity {
    events: AtomicU32,
    in_flight: AtomicU32,
}

/// A request in progress; ending it is activity too.
struct InFlight<'a>(&'a Activity);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let activity = self.0;
        activity.bump();
        let in_flight = activity.in_flight.load(Ordering::Relaxed);
        activity.in_flight.store(in_flight - 1, Ordering::Relaxed);
    }
}

impl Activity {
    fn bump(&self) {
        // A load and a store: only the connection's task writes, so no read-modify-write
        // is needed (and none of its cost).
        let events = self.events.load(Ordering::Relaxed);
        self.events.store(events.wrapping_add(1), Ordering::Relaxed);
    }

    fn request(&self) -> InFlight<'_> {
        self.bump();
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        self.in_flight.store(in_flight + 1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Completes once the connection has been quiet for `limit` (up to a quarter more).
    async fn quiet_for(&self, limit: Duration) {
        let quarter = limit / QUIET_QUARTERS;
        let mut seen = self.events.load(Ordering::Relaxed);
        let mut quiet = 0;
        loop {
            tokio::time::sleep(quarter).await;
            let events = self.events.load(Ordering::Relaxed);
            if events != seen || self.in_flight.load(Ordering::Relaxed) > 0 {
                seen = events;
                quiet = 0;
                continue;
            }
            quiet += 1;
            if quiet == QUIET_QUARTERS {
                return;
            }
        }
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
/// whatever the buffers' size. A client that is never waited on is never judged: a window
/// opens when a write first has to wait, so a client that keeps up costs no clock reads.
struct StallGuard<T> {
    inner: T,
    limit: Duration,
    stalled_since: Option<Pin<Box<Sleep>>>,
    window: Option<RateWindow>,
    /// Accepted writes are activity for the head limit.
    connection: Arc<Connection>,
}

/// One window of the read-rate rule, from the first wait in it.
struct RateWindow {
    started: Instant,
    accepted: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
}

impl RateWindow {
    /// A window opened by a write that has to wait from `now`.
    fn waiting_from(now: Instant) -> RateWindow {
        RateWindow {
            started: now,
            accepted: 0,
            waited: Duration::ZERO,
            waiting_since: Some(now),
        }
    }

    /// A write finished with `accepted` bytes at `now`: once the window has lasted `limit`,
    /// whether it shows a reader too slow to keep; `None` while it goes on.
    fn judge(&mut self, accepted: usize, now: Instant, limit: Duration) -> Option<bool> {
        if let Some(since) = self.waiting_since.take() {
            self.waited += now - since;
        }
        self.accepted += accepted as u64;
        let elapsed = now - self.started;
        (elapsed >= limit).then(|| {
            self.waited >= elapsed / 2
                && (self.accepted as f64) < MIN_READ_RATE as f64 * elapsed.as_secs_f64()
        })
    }
}

impl<T> StallGuard<T> {
    fn new(inner: T, limit: Duration, connection: Arc<Connection>) -> StallGuard<T> {
        StallGuard {
            inner,
            limit,
            stalled_since: None,
            window: None,
            connection,
        }
    }

    /// Passes a write-side poll through; one that stays pending too long becomes an error.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Pending => {
                match &mut self.window {
                    Some(window) => {
                        window.waiting_since.get_or_insert_with(Instant::now);
                    }
                    None => self.window = Some(RateWindow::waiting_from(Instant::now())),
                }
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
        let poll = self.watch(cx, poll);
        let Poll::Ready(Ok(written)) = poll else {
            return poll;
        };
        if written > 0 {
            self.connection.activity.bump();
        }
        let Some(window) = &mut self.window else {
            return poll;
        };
        match window.judge(written, Instant::now(), self.limit) {
            None => poll,
            Some(false) => {
                self.window = None;
                poll
            }
            Some(true) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client reads too slowly",
            ))),
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
    fn a_trickling_reader_is_judged_too_slow_and_a_fast_one_is_not() {
        let limit = Duration::from_secs(30);
        let start = Instant::now();
        // Waited on most of the window, 2.8 KB/s accepted.
        let mut trickle = RateWindow::waiting_from(start);
        assert_eq!(
            trickle.judge(1024, start + Duration::from_secs(10), limit),
            None
        );
        trickle.waiting_since = Some(start + Duration::from_secs(10));
        assert_eq!(trickle.judge(84 * 1024, start + limit, limit), Some(true));
        // Waited on as much, but 100 KiB/s accepted: a slow network, not an attack.
        let mut slow_network = RateWindow::waiting_from(start);
        assert_eq!(
            slow_network.judge(3000 * 1024, start + limit, limit),
            Some(false)
        );
        // Little accepted, but waited on only briefly: a client with little to read.
        let mut brief = RateWindow::waiting_from(start);
        assert_eq!(
            brief.judge(100, start + Duration::from_secs(1), limit),
            None
        );
        assert_eq!(brief.judge(100, start + limit, limit), Some(false));
    }
}
