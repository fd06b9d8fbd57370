//! A fake tracked website on port 0: it answers the tracker's path checks, serves pages that
//! carry the script tag for the browser test, and records every request it receives so tests
//! can prove what the tracker asked for (and what it never asked for).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[derive(Default)]
struct Behaviour {
    pages: HashSet<String>,
    /// Answer 200 to every path, like a catch-all single-page app.
    every_path_exists: bool,
    redirects: HashMap<String, String>,
    /// Pages served as given, without the script tag (other sites in the browser test).
    raw_pages: HashMap<String, String>,
    delay: Duration,
    tracker_url: String,
    /// Request targets (path and query) in the order received.
    requests: Vec<String>,
}

pub struct Site {
    pub addr: SocketAddr,
    scheme: &'static str,
    behaviour: Arc<Mutex<Behaviour>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Site {
    pub const CA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ca.pem");

    /// Starts a site on its own thread (so it keeps answering while a test blocks).
    pub fn start() -> Site {
        Site::spawn(None)
    }

    /// The same site over https, with the certificate in `tests/fixtures/localhost.pem` (for
    /// `127.0.0.1` and `localhost`) issued by the test CA in [`Site::CA_FILE`]; clients trust
    /// it through `SSL_CERT_FILE`.
    pub fn start_https() -> Site {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let certs = CertificateDer::pem_file_iter(format!("{fixtures}/localhost.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(format!("{fixtures}/localhost.key")).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Site::spawn(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    fn spawn(tls: Option<tokio_rustls::TlsAcceptor>) -> Site {
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let (stop, stopped) = oneshot::channel();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let shared = behaviour.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(shared, tls, addr_tx, stopped));
        });
        let addr = addr_rx.recv().expect("the site thread reports its address");
        Site {
            addr,
            scheme,
            behaviour,
            stop: Some(stop),
        }
    }

    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    pub fn add_page(&self, path: &str) -> &Site {
        self.behaviour
            .lock()
            .unwrap()
            .pages
            .insert(path.to_string());
        self
    }

    /// Serves `html` as it is at `path`.
    pub fn add_raw_page(&self, path: &str, html: &str) -> &Site {
        self.behaviour
            .lock()
            .unwrap()
            .raw_pages
            .insert(path.to_string(), html.to_string());
        self
    }

    pub fn every_path_exists(&self) -> &Site {
        self.behaviour.lock().unwrap().every_path_exists = true;
        self
    }

    pub fn redirect(&self, path: &str, location: &str) -> &Site {
        self.behaviour
            .lock()
            .unwrap()
            .redirects
            .insert(path.to_string(), location.to_string());
        self
    }

    pub fn delay(&self, delay: Duration) -> &Site {
        self.behaviour.lock().unwrap().delay = delay;
        self
    }

    /// Pages embed `<script type="module" src="{tracker_url}/count.js">`.
    pub fn set_tracker_url(&self, url: &str) -> &Site {
        self.behaviour.lock().unwrap().tracker_url = url.to_string();
        self
    }

    /// Every request target received so far.
    pub fn requests(&self) -> Vec<String> {
        self.behaviour.lock().unwrap().requests.clone()
    }

    /// How many requests asked for exactly this target.
    pub fn hits(&self, target: &str) -> usize {
        self.behaviour
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| *r == target)
            .count()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(
    behaviour: Arc<Mutex<Behaviour>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    addr_tx: std::sync::mpsc::Sender<SocketAddr>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    addr_tx.send(listener.local_addr().unwrap()).unwrap();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
            _ = &mut stopped => return,
        };
        let behaviour = behaviour.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| answer(behaviour.clone(), request));
            let http = hyper::server::conn::http1::Builder::new();
            let _ = match tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                    Err(_) => return,
                },
                None => http.serve_connection(TokioIo::new(stream), service).await,
            };
        });
    }
}

async fn answer(
    behaviour: Arc<Mutex<Behaviour>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_default();
    let path = request.uri().path().to_string();
    let (delay, redirect, raw, exists, tracker_url) = {
        let mut state = behaviour.lock().unwrap();
        state.requests.push(target);
        (
            state.delay,
            state.redirects.get(&path).cloned(),
            state.raw_pages.get(&path).cloned(),
            state.every_path_exists || state.pages.contains(&path),
            state.tracker_url.clone(),
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = if let Some(location) = redirect {
        Response::builder()
            .status(302)
            .header("location", location)
            .body(Full::default())
    } else if let Some(html) = raw {
        Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(html)))
    } else if exists {
        Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(page(&path, &tracker_url))))
    } else {
        Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"no such page")))
    };
    Ok(response.unwrap())
}

/// A small page with the script tag and links between pages.
fn page(path: &str, tracker_url: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Page {path}</title>\
         <script type=\"module\" src=\"{tracker_url}/count.js\"></script></head>\
         <body><h1 id=\"path\">{path}</h1><a id=\"home\" href=\"/\">home</a></body></html>"
    )
}
