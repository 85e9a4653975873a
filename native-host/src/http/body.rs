//! What the client receives ([`ProxyBody`], a [`Watched`] body: an upstream's or the edge's
//! own), and the responses the edge answers with itself.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tlsgate_core::policy::LocalResponse;

use crate::watched::Watched;

type Inner = Either<Incoming, Full<Bytes>>;

/// What the client receives.
pub type ProxyBody = Watched<Inner>;

pub(super) fn local_response(local: &LocalResponse) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::new(Either::Right(Full::new(Bytes::from(
        local.body.clone(),
    )))));
    *response.status_mut() = StatusCode::from_u16(local.status).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    for (name, value) in &local.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

pub(super) fn error_response(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::new(Either::Right(Full::new(
        Bytes::from_static(body.as_bytes()),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
