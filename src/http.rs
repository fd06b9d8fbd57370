//! The response side of HTTP in one place: the body type every handler returns, named
//! constructors for the responses we send, and the error type that becomes a response.

use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Bytes, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

/// The one response body type. A complete body is a single frame, so small responses are
/// written without an extra copy; a streamed body is fed chunk by chunk through a small
/// bounded channel, so a slow client slows the producer instead of growing memory.
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, StreamAborted>>),
}

/// A streamed body ended early (its source failed); the client sees an incomplete response
/// rather than a truncated one that looks whole.
#[derive(Debug)]
pub struct StreamAborted;

impl fmt::Display for StreamAborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the response body could not be completed")
    }
}

impl std::error::Error for StreamAborted {}

impl Body {
    pub fn empty() -> Body {
        Body::Full(None)
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::Full(if bytes.is_empty() { None } else { Some(bytes) })
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = StreamAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(chunks) => chunks
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.is_none(),
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// Chunks of about this size are sent to streamed bodies.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks waiting to be written; with the chunk size this bounds a stream's memory.
const CHUNKS_IN_FLIGHT: usize = 2;

/// The producing end of a streamed body: write text into [`Chunks::buf`], call
/// [`Chunks::flush_if_full`] now and then, and [`Chunks::finish`] at the end.
pub struct Chunks {
    sender: mpsc::Sender<Result<Bytes, StreamAborted>>,
    buf: String,
}

/// The client went away: stop producing.
#[derive(Debug)]
pub struct ClientGone;

impl Chunks {
    pub fn buf(&mut self) -> &mut String {
        &mut self.buf
    }

    /// Sends the buffer once it holds a chunk's worth; waits while the client is behind (a
    /// client reading too slowly is cut by the connection's guard, see `server`).
    pub async fn flush_if_full(&mut self) -> Result<(), ClientGone> {
        if self.buf.len() >= CHUNK_BYTES {
            self.flush().await
        } else {
            Ok(())
        }
    }

    async fn flush(&mut self) -> Result<(), ClientGone> {
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            String::with_capacity(CHUNK_BYTES + 512),
        ));
        self.sender.send(Ok(chunk)).await.map_err(|_| ClientGone)
    }

    /// Sends what is left and ends the body.
    pub async fn finish(mut self) -> Result<(), ClientGone> {
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Ends the body as failed, so the client cannot mistake it for complete.
    pub async fn abort(self) {
        let _ = self.sender.try_send(Err(StreamAborted));
    }
}

/// A response whose body is produced by whoever holds the returned [`Chunks`].
pub fn streamed(status: StatusCode, content_type: HeaderValue) -> (Response<Body>, Chunks) {
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let mut response = Response::new(Body::Stream(receiver));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    (
        response,
        Chunks {
            sender,
            buf: String::with_capacity(CHUNK_BYTES + 512),
        },
    )
}

pub const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
pub const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
pub const TEXT_HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");

/// The decimal digits of `n`, written into `buffer` without the formatting machinery (it and
/// its `String` cost `/register` more than the slot it took, and pages write thousands of
/// counts).
pub fn decimal_digits(mut n: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buffer[start..]
}

/// Says every body is exactly the type its `Content-Type` says (set on every response).
/// Through the entry: a response whose map has it already (a cached set of headers) costs
/// one lookup, not a replacement.
pub fn nosniff(headers: &mut HeaderMap) {
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
}

/// Headers a response usually carries, for sizing its map once.
const RESPONSE_HEADERS: usize = 8;

/// A response with a body and its content type.
pub fn with_body(
    status: StatusCode,
    content_type: HeaderValue,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Body::from(body.into()));
    *response.status_mut() = status;
    // Room for what the script endpoints add (CORS, caching, the day marker, nosniff): a map
    // grown by insertion reallocates and rehashes on the way.
    let headers = response.headers_mut();
    headers.reserve(RESPONSE_HEADERS);
    headers.insert(header::CONTENT_TYPE, content_type);
    response
}

/// A short plain-text response, the form of every error we send.
pub fn text(status: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    with_body(status, TEXT_PLAIN, message)
}

pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_body(status, APPLICATION_JSON, body)
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// An error a handler returns; it becomes a short plain-text response. The message is what
/// the client sees, so it never carries internal details (those go to the log).
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    retry_after: Option<u32>,
    /// For 405: what the route accepts.
    allow: Option<&'static str>,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// 405 with the `Allow` header listing what the route accepts.
    pub fn method_not_allowed(allow: &'static str) -> HttpError {
        HttpError {
            allow: Some(allow),
            ..HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
    }

    /// 429: this client holds too much already; come back in `retry_after_secs` seconds.
    pub fn too_many(message: impl Into<Cow<'static, str>>, retry_after_secs: u32) -> HttpError {
        HttpError {
            retry_after: Some(retry_after_secs.max(1)),
            ..HttpError::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// 425: come back in `retry_after_secs` seconds.
    pub fn too_early(retry_after_secs: u32) -> HttpError {
        HttpError {
            retry_after: Some(retry_after_secs.max(1)),
            ..HttpError::new(
                StatusCode::TOO_EARLY,
                "too early: the minimum delay since registration has not passed",
            )
        }
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// As a short plain-text response.
    pub fn into_response(self) -> Response<Body> {
        let mut message = self.message.to_string();
        message.push('\n');
        let response = text(self.status, message);
        self.finish(response)
    }

    /// Adds what every form of this error carries (plain text, HTML page or JSON object):
    /// `Retry-After` on 425, 429 and 503, so clients (and count.js) pause instead of
    /// hammering, and `Allow` on 405.
    pub fn finish(&self, mut response: Response<Body>) -> Response<Body> {
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        let retry_after = match (self.retry_after, self.status) {
            (Some(seconds), _) => Some(seconds),
            (None, StatusCode::SERVICE_UNAVAILABLE) => Some(2),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A malformed query string is the client's to fix.
impl From<crate::query::DecodeError> for HttpError {
    fn from(error: crate::query::DecodeError) -> HttpError {
        HttpError::bad_request(format!("query parameter is {error}"))
    }
}

impl From<crate::db::Unavailable> for HttpError {
    fn from(_: crate::db::Unavailable) -> HttpError {
        HttpError::unavailable("database unavailable, try again shortly")
    }
}

/// A file served from memory (`count.js`, the stylesheet): its ETag is a hash of the content,
/// stable across restarts, so browsers keep their copy until the content changes and
/// revalidate with a bodiless 304.
pub struct Cached {
    body: Bytes,
    content_type: HeaderValue,
    cache_control: HeaderValue,
    etag: HeaderValue,
    version: String,
}

impl Cached {
    pub fn new(
        body: impl Into<Bytes>,
        content_type: HeaderValue,
        cache_control: HeaderValue,
    ) -> Cached {
        let body = body.into();
        // A fixed-key hash: the same content gets the same ETag in every process.
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(&body[..]);
        let version = format!("{hash:016x}");
        let etag = HeaderValue::from_str(&format!("\"{version}\"")).expect("hex is a valid header");
        Cached {
            body,
            content_type,
            cache_control,
            etag,
            version,
        }
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The content's hash in hex, for URLs that change when the content does.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The file, or 304 when `If-None-Match` names the current version.
    pub fn respond(&self, request: &HeaderMap) -> Response<Body> {
        let fresh = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == self.etag
            });
        let mut response = if fresh {
            empty(StatusCode::NOT_MODIFIED)
        } else {
            with_body(StatusCode::OK, self.content_type.clone(), self.body.clone())
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_files_revalidate_by_etag() {
        let file = Cached::new("body", TEXT_PLAIN, HeaderValue::from_static("max-age=60"));
        let mut headers = HeaderMap::new();
        let first = file.respond(&headers);
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(etag, format!("\"{}\"", file.version()));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{etag}")).unwrap(),
        );
        assert_eq!(file.respond(&headers).status(), StatusCode::NOT_MODIFIED);
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(file.respond(&headers).status(), StatusCode::OK);
        let again = Cached::new("body", TEXT_PLAIN, HeaderValue::from_static("max-age=60"));
        assert_eq!(again.version(), file.version(), "stable across restarts");
        assert_ne!(
            Cached::new("other", TEXT_PLAIN, TEXT_PLAIN).version(),
            file.version()
        );
    }
}
