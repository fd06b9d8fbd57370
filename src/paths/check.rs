//! Asking the tracked site whether a path exists: one `GET` to the callback origin.
//!
//! The connection always goes to the configured host and port; the path only ever becomes
//! the request target of that connection (see `normalize::request_target`), so no path can
//! make the tracker talk to another host. Redirects are answers, not instructions: they are
//! never followed. The trust store for `https` origins is read on the first check that needs
//! it, so a tracker whose callback is plain `http` never loads it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, pki_types::ServerName};

use super::normalize::request_target;
use crate::config::Origin;

/// What the tracked site said about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the page exists.
    Exists,
    /// 3xx or 4xx: it does not (a redirect is not the page itself).
    Missing,
}

/// The site could not give a verdict: unreachable, too slow, or a 5xx.
#[derive(Debug)]
pub struct CheckFailed(pub String);

pub struct PathChecker {
    origin: Origin,
    host_header: HeaderValue,
    timeout: Duration,
    tls: OnceLock<Result<TlsConnector, String>>,
}

impl PathChecker {
    pub fn new(origin: Origin, timeout: Duration) -> PathChecker {
        let host_header =
            HeaderValue::from_str(origin.as_str().split_once("://").map_or("", |(_, a)| a))
                .expect("a validated origin is a valid Host header");
        PathChecker {
            origin,
            host_header,
            timeout,
            tls: OnceLock::new(),
        }
    }

    /// Asks the site for `path` (normalised), within the configured timeout.
    pub async fn check(&self, path: &str) -> Result<Verdict, CheckFailed> {
        match tokio::time::timeout(self.timeout, self.request(path)).await {
            Ok(result) => result,
            Err(_) => Err(CheckFailed(format!("no answer within {:?}", self.timeout))),
        }
    }

    async fn request(&self, path: &str) -> Result<Verdict, CheckFailed> {
        // Brackets belong to the URL form of an IPv6 host, not to the socket address.
        let host = self
            .origin
            .host
            .trim_start_matches('[')
            .trim_end_matches(']');
        let tcp = TcpStream::connect((host, self.origin.port))
            .await
            .map_err(|e| CheckFailed(format!("cannot connect to {}: {e}", self.origin.as_str())))?;
        let _ = tcp.set_nodelay(true);
        if self.origin.tls {
            let connector = self.tls_connector()?;
            let name = ServerName::try_from(host.to_string())
                .map_err(|e| CheckFailed(format!("invalid TLS server name {host}: {e}")))?;
            let tls = connector.connect(name, tcp).await.map_err(|e| {
                CheckFailed(format!("TLS with {} failed: {e}", self.origin.as_str()))
            })?;
            self.send(TokioIo::new(tls), path).await
        } else {
            self.send(TokioIo::new(tcp), path).await
        }
    }

    async fn send<T>(&self, io: TokioIo<T>, path: &str) -> Result<Verdict, CheckFailed>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let failed = |e: hyper::Error| {
            CheckFailed(format!(
                "HTTP exchange with {} failed: {e}",
                self.origin.as_str()
            ))
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(failed)?;
        let connection = tokio::spawn(connection);
        let request = Request::get(request_target(path))
            .header(header::HOST, self.host_header.clone())
            .header(
                header::USER_AGENT,
                HeaderValue::from_static("oxitraffic path check"),
            )
            .header(header::ACCEPT, HeaderValue::from_static("text/html,*/*"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| CheckFailed(format!("cannot build the request: {e}")))?;
        let status = sender.send_request(request).await.map_err(failed)?.status();
        // The body is not needed; dropping the connection is cheaper than reading it.
        connection.abort();
        verdict(status)
    }

    fn tls_connector(&self) -> Result<TlsConnector, CheckFailed> {
        self.tls.get_or_init(load_tls).clone().map_err(CheckFailed)
    }
}

fn verdict(status: StatusCode) -> Result<Verdict, CheckFailed> {
    if status.is_success() {
        Ok(Verdict::Exists)
    } else if status.is_redirection() || status.is_client_error() {
        Ok(Verdict::Missing)
    } else {
        Err(CheckFailed(format!("the site answered {status}")))
    }
}

fn load_tls() -> Result<TlsConnector, String> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "could not read part of the system's trust store");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "loaded trust anchors for https path checks");
    if roots.is_empty() {
        return Err(
            "no trusted root certificates found (install ca-certificates or set SSL_CERT_FILE)"
                .into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2xx_means_the_page_exists() {
        assert_eq!(verdict(StatusCode::OK).unwrap(), Verdict::Exists);
        assert_eq!(verdict(StatusCode::NO_CONTENT).unwrap(), Verdict::Exists);
        assert_eq!(
            verdict(StatusCode::MOVED_PERMANENTLY).unwrap(),
            Verdict::Missing
        );
        assert_eq!(verdict(StatusCode::NOT_FOUND).unwrap(), Verdict::Missing);
        assert!(verdict(StatusCode::INTERNAL_SERVER_ERROR).is_err());
        assert!(verdict(StatusCode::BAD_GATEWAY).is_err());
    }
}
