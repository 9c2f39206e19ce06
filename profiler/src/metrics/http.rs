//! The scrape endpoint: `/metrics` answered from the latest snapshot (a scrape never touches
//! the kernel), hardened for exposure: GET and HEAD only, no request bodies, small request
//! headers read within a time limit, a time limit per connection and a cap on concurrent
//! connections.
use std::{
    convert::Infallible,
    sync::{Arc, RwLock},
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;

use crate::metrics::{self, Format, Snapshot};

const INDEX: &str = "<!doctype html><html><head><title>syscall-profiler</title></head><body>\
<h1>syscall-profiler</h1><p>Where processes' time at the kernel boundary goes: \
entry, handler, blocked, runqueue.</p><p><a href=\"/metrics\">/metrics</a></p></body></html>\n";

fn response(status: StatusCode, content_type: &str, body: String, head: bool) -> Response<Full<Bytes>> {
    let length = body.len();
    let mut response = Response::new(Full::new(if head { Bytes::new() } else { Bytes::from(body) }));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_str(content_type).expect("ascii"),
    );
    headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
    response
}

/// Answers one request from the latest snapshot.
pub fn handle(
    method: &Method,
    path: &str,
    accept: Option<&str>,
    body_length: u64,
    snapshot: &Snapshot,
) -> Response<Full<Bytes>> {
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET and HEAD\n".into(),
            false,
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if body_length > 0 {
        return response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            "no request bodies\n".into(),
            head,
        );
    }
    match path {
        "/metrics" => {
            let format = Format::negotiate(accept);
            response(
                StatusCode::OK,
                format.content_type(),
                metrics::encode(snapshot, format),
                head,
            )
        }
        "/" => response(StatusCode::OK, "text/html; charset=utf-8", INDEX.into(), head),
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics\n".into(),
            head,
        ),
    }
}

pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    latest: Arc<RwLock<Arc<Snapshot>>>,
    max_connections: usize,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let latest = latest.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let snapshot = latest.read().expect("no panics while holding it").clone();
                async move {
                    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
                    let body_length = request
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                        .unwrap_or(0u64);
                    Ok::<_, Infallible>(handle(
                        request.method(),
                        request.uri().path(),
                        accept,
                        body_length,
                        &snapshot,
                    ))
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .max_buf_size(16 * 1024)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            // A connection (keep-alive included) gets at most a minute.
            let _ = tokio::time::timeout(Duration::from_secs(60), connection).await;
            drop(permit);
        });
    }
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

    #[test]
    fn only_get_and_head_on_known_paths() {
        let snapshot = Snapshot::default();
        let (status, text) = body(handle(&Method::GET, "/metrics", None, 0, &snapshot));
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("syscall_profiler_build_info"), "{text}");
        let (status, text) = body(handle(&Method::HEAD, "/metrics", None, 0, &snapshot));
        assert_eq!((status, text.as_str()), (StatusCode::OK, ""));
        let response = handle(&Method::POST, "/metrics", None, 0, &snapshot);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(
            handle(&Method::GET, "/nope", None, 0, &snapshot).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            handle(&Method::GET, "/metrics", None, 10, &snapshot).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let (status, text) = body(handle(&Method::GET, "/", None, 0, &snapshot));
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("href=\"/metrics\""));
    }

    #[test]
    fn open_metrics_when_asked() {
        let snapshot = Snapshot::default();
        let response = handle(
            &Method::GET,
            "/metrics",
            Some("application/openmetrics-text; version=1.0.0"),
            0,
            &snapshot,
        );
        assert!(response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let (_, text) = body(response);
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
