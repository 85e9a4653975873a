//! Bodies in both directions, watched: one that stops moving is cut at the stream idle
//! deadline, and a response body holds its exchange's resources until it is sent. Also the
//! responses the edge answers with itself.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tlsgate_core::policy::LocalResponse;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use crate::io::InFlight;

type Inner = Either<Incoming, Full<Bytes>>;

/// The error a body reports when it stops moving (see [`Watched`]).
#[derive(Debug, thiserror::Error)]
#[error("no body data moved for {0:?} (stream idle timeout)")]
pub struct StreamIdle(Duration);

/// Resources an exchange holds until its response body has been sent (or dropped): its place
/// in the connection's open exchanges (a connection is idle only when none is open — Envoy's
/// rule, streams not bytes — so HTTP/2 PINGs cannot hold an idle connection open) and its slot
/// in the endpoint's upstream request cap.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) exchange: InFlight,
    pub(super) _upstream_slot: Option<OwnedSemaphorePermit>,
}

/// A body in either direction, cut with [`StreamIdle`] when no frame arrives for the stream
/// idle deadline: an upstream that sends its head and stalls, or a client that stalls an upload,
/// costs a timer, not a connection held forever.
#[derive(Debug)]
pub struct Watched<B> {
    inner: B,
    held: Option<Held>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
}

/// What the client receives.
pub type ProxyBody = Watched<Inner>;

impl<B> Watched<B> {
    pub(super) fn new(inner: B) -> Self {
        Self {
            inner,
            held: None,
            idle: None,
        }
    }

    pub(super) fn idle_after(mut self, idle: Duration) -> Self {
        self.idle = Some((idle, Box::pin(tokio::time::sleep(idle))));
        self
    }

    pub(super) fn holding(mut self, held: Held) -> Self {
        held.exchange.responding();
        self.held = Some(held);
        self
    }
}

impl<B> http_body::Body for Watched<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Some(held) = &self.held {
            held.exchange.polled();
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                // Fully sent: the exchange is over even if hyper keeps the body a while longer.
                self.held = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                if let Some((idle, sleep)) = &mut self.idle {
                    let next = tokio::time::Instant::now() + *idle;
                    sleep.as_mut().reset(next);
                }
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let expired = match &mut self.idle {
                    Some((idle, sleep)) => sleep.as_mut().poll(cx).is_ready().then_some(*idle),
                    None => None,
                };
                match expired {
                    Some(idle) => {
                        self.held = None;
                        Poll::Ready(Some(Err(Box::new(StreamIdle(idle)))))
                    }
                    None => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

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
