//! `tlsgate playground`: serves the browser playground's static files (docs/playground/).
//!
//! The page needs no server (it also works opened from a file); this one exists so a team can
//! share it on a private address. It serves the directory's own files and nothing else, with a
//! Content-Security-Policy that forbids the page any network request: what is pasted into it
//! cannot leave the browser, whatever the page's script did.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// No fetch, no form posts, no frames: scripts and styles from this origin, WebAssembly allowed.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'none'; form-action 'none'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Serves `dir` on `listen` until the process is stopped.
pub async fn serve(listen: SocketAddr, dir: PathBuf) -> anyhow::Result<()> {
    if !dir.join("index.html").is_file() {
        anyhow::bail!(
            "{} has no index.html: run this from the repository (or pass --dir docs/playground)",
            dir.display()
        );
    }
    if !dir.join("tlsgate-playground.js").is_file() {
        anyhow::bail!(
            "{} has no tlsgate-playground.js (the engine): run `make playground` first",
            dir.display()
        );
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(
        "playground on http://{}/ (serving {})",
        listener.local_addr()?,
        dir.display()
    );
    let dir = Arc::new(dir);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accept: {e}");
                continue;
            }
        };
        let dir = dir.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let dir = dir.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&dir, &req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            // A peer that never finishes its request is not waited on forever.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), conn).await;
        });
    }
}

async fn respond<B>(dir: &Path, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    let name = match req.uri().path() {
        "/" => "index.html",
        path => path.trim_start_matches('/'),
    };
    // One file of the directory, by a plain name: no subdirectories, no dot-files, no `..`.
    let plain_name = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !plain_name {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    let Some(kind) = content_type(name) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    match tokio::fs::read(dir.join(name)).await {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_static(CSP),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                header::HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache"),
            );
            response
        }
        Err(_) => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn content_type(name: &str) -> Option<&'static str> {
    Some(match name.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
