//! A minimal HTTP/1.1 client over a real TCP connection: one request per connection, the
//! whole response read into memory.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub struct RequestSpec<'a> {
    pub method: Method,
    pub target: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Bytes,
}

impl<'a> RequestSpec<'a> {
    pub fn new(method: Method, target: &'a str) -> RequestSpec<'a> {
        RequestSpec {
            method,
            target,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

/// Sends one request and reads the whole response; fails the test after 30 s.
pub async fn send(addr: SocketAddr, spec: RequestSpec<'_>) -> Reply {
    tokio::time::timeout(Duration::from_secs(30), try_send(addr, spec))
        .await
        .expect("the request did not complete within 30 s")
        .unwrap_or_else(|e| panic!("request to {addr} failed: {e}"))
}

/// Like [`send`], but a connection failure is an `Err` (for servers that may be going away).
pub async fn try_send(addr: SocketAddr, spec: RequestSpec<'_>) -> Result<Reply, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(spec.method)
        .uri(spec.target)
        .header("host", addr.to_string());
    for (name, value) in spec.headers {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(spec.body)).expect("a valid request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub async fn try_get(addr: SocketAddr, target: &str) -> Result<Reply, String> {
    try_send(addr, RequestSpec::new(Method::GET, target)).await
}

pub async fn try_post(addr: SocketAddr, target: &str) -> Result<Reply, String> {
    try_send(addr, RequestSpec::new(Method::POST, target)).await
}

pub async fn get(addr: SocketAddr, target: &str) -> Reply {
    send(addr, RequestSpec::new(Method::GET, target)).await
}

pub async fn post(addr: SocketAddr, target: &str) -> Reply {
    send(addr, RequestSpec::new(Method::POST, target)).await
}

/// `encodeURIComponent`, as count.js encodes a path or a referrer into a query value.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
