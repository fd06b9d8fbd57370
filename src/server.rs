//! The accept loop: one hyper HTTP/1 connection per TCP stream, with the limits that keep a
//! small server alive under hostile clients, and graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::App;
use crate::http::HttpError;
use crate::routes;

/// A client must send a complete request head within this time, also between keep-alive
/// requests; slow-header (slowloris) clients are cut off instead of holding a connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a handler may take before the client gets a 503 (streamed bodies excepted).
pub const HANDLER_DEADLINE: Duration = Duration::from_secs(10);
/// Largest request head hyper buffers; beyond it the answer is 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Serves connections until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);

    let connection_slots = Arc::new(Semaphore::new(app.config.max_connections as usize));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // Waiting for a free connection slot before accepting leaves excess clients in the
        // kernel's backlog instead of in our memory.
        let slot = tokio::select! {
            slot = connection_slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
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
        let service = service_fn(move |request| {
            let app = app.clone();
            async move {
                let response =
                    tokio::time::timeout(HANDLER_DEADLINE, routes::dispatch(&app, request))
                        .await
                        .unwrap_or_else(|_| {
                            HttpError::unavailable("request timed out").into_response()
                        });
                Ok::<_, Infallible>(response)
            }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
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
