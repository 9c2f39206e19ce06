//! The scrape endpoint: `/metrics` answered from the latest [`Exposition`], each format
//! encoded (and gzip-compressed, when the scraper accepts it) once per snapshot, by the first
//! scrape that asks for it: a snapshot nobody scrapes costs no encoding. A scrape never
//! touches the kernel itself: when the latest exposition is older than the agent's
//! `--interval`, it asks the agent for a read and waits for the exposition that follows (up to
//! [`FRESH_WAIT`]), so the tables are read as often as they are scraped - at most once an
//! interval, however many scrape. Hardened for exposure: GET and HEAD only, no request bodies,
//! request headers of at most 16 KiB read within 5 s (also the idle time a kept-alive
//! connection gets), a connection lives at most a minute, and at most `max_connections` are
//! open: a new one closes the oldest, so idle or slow clients cannot starve scrapes.
use std::{
    collections::BTreeMap,
    convert::Infallible,
    io::Write as _,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::{
    sync::{watch, Notify},
    task::AbortHandle,
};

use crate::metrics::{encode, Format, Snapshot};

const INDEX: &str = "<!doctype html><html><head><title>syscall-profiler</title></head><body>\
<h1>syscall-profiler</h1><p>Where processes' time at the kernel boundary goes: \
entry, handler, blocked, runqueue.</p><p><a href=\"/metrics\">/metrics</a></p></body></html>\n";

/// Time to send a request's headers, and the longest a kept-alive connection may stay idle.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lives, however busy.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a scrape waits for the read it asked for (a read beside 1,000 busy processes
/// takes tens of ms; a boundary refresh, which may come first, up to ~0.2 s): then it is
/// answered from the exposition there is.
const FRESH_WAIT: Duration = Duration::from_secs(2);

/// One snapshot, and its exposition formats plain and gzipped, each made by the first scrape
/// that asks for it (Prometheus asks for one format, every 15 s or more: encoding both at
/// every snapshot, every second, was most of the encoding done).
pub struct Exposition {
    snapshot: Snapshot,
    /// When its read was taken (`None`: no read yet).
    made: Option<Instant>,
    text: OnceLock<Bytes>,
    open_metrics: OnceLock<Bytes>,
    text_gzip: OnceLock<Bytes>,
    open_metrics_gzip: OnceLock<Bytes>,
}

impl Exposition {
    pub fn new(snapshot: Snapshot) -> Exposition {
        Exposition {
            snapshot,
            made: Some(Instant::now()),
            text: OnceLock::new(),
            open_metrics: OnceLock::new(),
            text_gzip: OnceLock::new(),
            open_metrics_gzip: OnceLock::new(),
        }
    }

    fn body(&self, format: Format, gzip: bool) -> Bytes {
        let (plain, compressed) = match format {
            Format::Text => (&self.text, &self.text_gzip),
            Format::OpenMetrics => (&self.open_metrics, &self.open_metrics_gzip),
        };
        let plain = plain.get_or_init(|| Bytes::from(encode(&self.snapshot, format)));
        if gzip {
            compressed.get_or_init(|| gzip_of(plain)).clone()
        } else {
            plain.clone()
        }
    }
}

impl Default for Exposition {
    /// Nothing read yet: the first scrape asks for a read.
    fn default() -> Exposition {
        Exposition {
            made: None,
            ..Exposition::new(Snapshot::default())
        }
    }
}

/// The latest exposition, as a scrape sees it, and how it asks the agent for a fresher one.
#[derive(Clone)]
pub struct Latest {
    exposition: watch::Receiver<Arc<Exposition>>,
    wanted: Arc<Notify>,
    max_age: Duration,
}

impl Latest {
    /// Scrapes served from what `exposition` receives, asking through `wanted` for a read
    /// when what they have is older than `max_age`.
    pub fn new(exposition: watch::Receiver<Arc<Exposition>>, wanted: Arc<Notify>, max_age: Duration) -> Latest {
        Latest {
            exposition,
            wanted,
            max_age,
        }
    }

    /// The latest exposition, as it is.
    fn current(&self) -> Arc<Exposition> {
        self.exposition.borrow().clone()
    }

    /// The latest exposition if it is at most `max_age` old; else the one the read it asks
    /// for brings (or, after [`FRESH_WAIT`], the latest there is).
    async fn fresh(&mut self) -> Arc<Exposition> {
        let latest = self.exposition.borrow_and_update().clone();
        if latest.made.is_some_and(|made| made.elapsed() <= self.max_age) {
            return latest;
        }
        self.wanted.notify_one();
        let _ = tokio::time::timeout(FRESH_WAIT, self.exposition.changed()).await;
        self.current()
    }
}

fn gzip_of(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("writing to a Vec cannot fail");
    Bytes::from(encoder.finish().expect("writing to a Vec cannot fail"))
}

/// Whether an `Accept-Encoding` value admits gzip (listed, and not with `q=0`).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|value| {
        value.split(',').any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f64>() == Ok(0.0)));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
    })
}

fn response(status: StatusCode, content_type: &str, body: Bytes, head: bool) -> Response<Full<Bytes>> {
    let length = body.len();
    let mut response = Response::new(Full::new(if head { Bytes::new() } else { body }));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_str(content_type).expect("ascii"),
    );
    headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
    response
}

/// What a request asks for, as far as the answer depends on it.
pub struct Asked<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub accept: Option<&'a str>,
    pub accept_encoding: Option<&'a str>,
    pub body_length: u64,
}

/// Answers one request from the latest exposition.
pub fn handle(asked: &Asked, exposition: &Exposition) -> Response<Full<Bytes>> {
    let head = asked.method == Method::HEAD;
    if asked.method != Method::GET && !head {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"only GET and HEAD\n"),
            false,
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if asked.body_length > 0 {
        return response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            Bytes::from_static(b"no request bodies\n"),
            head,
        );
    }
    match asked.path {
        "/metrics" => {
            let format = Format::negotiate(asked.accept);
            let gzip = accepts_gzip(asked.accept_encoding);
            let mut r = response(
                StatusCode::OK,
                format.content_type(),
                exposition.body(format, gzip),
                head,
            );
            let headers = r.headers_mut();
            headers.insert(
                header::VARY,
                header::HeaderValue::from_static("Accept, Accept-Encoding"),
            );
            if gzip {
                headers.insert(header::CONTENT_ENCODING, header::HeaderValue::from_static("gzip"));
            }
            r
        }
        "/" => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(INDEX.as_bytes()),
            head,
        ),
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found: try /metrics\n"),
            head,
        ),
    }
}

/// The open connections, oldest first, to close by.
#[derive(Default)]
struct Connections {
    open: BTreeMap<u64, AbortHandle>,
    next_id: u64,
}

/// Accepts connections for ever, answering each request from the exposition `latest` holds.
/// At most `max_connections` are open: a new connection closes the oldest.
pub async fn serve(listener: tokio::net::TcpListener, latest: Latest, max_connections: usize) {
    let connections = Arc::new(Mutex::new(Connections::default()));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: let connections close before trying again.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let mut open = connections.lock().expect("no panics while holding it");
        while open.open.len() >= max_connections.max(1) {
            let (_, oldest) = open.open.pop_first().expect("not empty");
            oldest.abort();
        }
        let id = open.next_id;
        open.next_id += 1;
        let task = tokio::spawn(connection(stream, latest.clone(), connections.clone(), id));
        // On the current-thread runtime the task cannot run (and remove itself) before this.
        open.open.insert(id, task.abort_handle());
    }
}

async fn connection(stream: tokio::net::TcpStream, latest: Latest, connections: Arc<Mutex<Connections>>, id: u64) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut latest = latest.clone();
        async move {
            // Only a scrape asks for a read: not a request for another page, or a refused one.
            let scrape = request.uri().path() == "/metrics" && matches!(*request.method(), Method::GET | Method::HEAD);
            let exposition = if scrape { latest.fresh().await } else { latest.current() };
            let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
            let asked = Asked {
                method: request.method(),
                path: request.uri().path(),
                accept: header(header::ACCEPT),
                accept_encoding: header(header::ACCEPT_ENCODING),
                body_length: header(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()).unwrap_or(0),
            };
            Ok::<_, Infallible>(handle(&asked, &exposition))
        }
    });
    let serving = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(16 * 1024)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, serving).await;
    connections.lock().expect("no panics while holding it").open.remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: Response<Full<Bytes>>) -> (StatusCode, String) {
        use http_body_util::BodyExt;
        let status = response.status();
        let bytes = block_on(response.into_body().collect()).expect("infallible").to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn get(path: &str) -> Asked<'_> {
        Asked {
            method: &Method::GET,
            path,
            accept: None,
            accept_encoding: None,
            body_length: 0,
        }
    }

    #[test]
    fn only_get_and_head_on_known_paths() {
        let exposition = Exposition::default();
        let (status, text) = body(handle(&get("/metrics"), &exposition));
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("syscall_profiler_build_info"), "{text}");
        let head = Asked {
            method: &Method::HEAD,
            ..get("/metrics")
        };
        let (status, text) = body(handle(&head, &exposition));
        assert_eq!((status, text.as_str()), (StatusCode::OK, ""));
        let post = Asked {
            method: &Method::POST,
            ..get("/metrics")
        };
        let response = handle(&post, &exposition);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(handle(&get("/nope"), &exposition).status(), StatusCode::NOT_FOUND);
        let with_body = Asked {
            body_length: 10,
            ..get("/metrics")
        };
        assert_eq!(handle(&with_body, &exposition).status(), StatusCode::PAYLOAD_TOO_LARGE);
        let (status, text) = body(handle(&get("/"), &exposition));
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("href=\"/metrics\""));
    }

    #[test]
    fn open_metrics_when_asked() {
        let exposition = Exposition::default();
        let asked = Asked {
            accept: Some("application/openmetrics-text; version=1.0.0"),
            ..get("/metrics")
        };
        let response = handle(&asked, &exposition);
        assert!(response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let (_, text) = body(response);
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn gzip_when_the_scraper_accepts_it() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
        let exposition = Exposition::default();
        let asked = Asked {
            accept_encoding: Some("gzip"),
            ..get("/metrics")
        };
        let response = handle(&asked, &exposition);
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        let compressed = block_on(http_body_util::BodyExt::collect(response.into_body()))
            .unwrap()
            .to_bytes();
        let mut plain = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut plain).unwrap();
        let (_, uncompressed) = body(handle(&get("/metrics"), &exposition));
        assert_eq!(plain, uncompressed);
    }
}
