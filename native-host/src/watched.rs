//! A body in either direction, watched: one that stops moving is cut at the stream idle
//! deadline, and a response body holds its exchange's resources until it is sent. A client's
//! request body on its way upstream ([`crate::upstream::UploadBody`]) and a response body on
//! its way to the client ([`crate::http::ProxyBody`]) are both [`Watched`], so it sits below
//! both modules.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use crate::io::InFlight;

/// The error a body reports when it stops moving (see [`Watched`]).
#[derive(Debug, thiserror::Error)]
#[error("no body data moved for {0:?} (stream idle timeout)")]
pub struct StreamIdle(Duration);

/// Resources an exchange holds until its response body has been sent (or dropped): its place
/// in the connection's open exchanges (a connection is idle only when none is open — Envoy's
/// rule, streams not bytes — so HTTP/2 PINGs cannot hold an idle connection open) and its slot
/// in the endpoint's upstream request cap.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) exchange: InFlight,
    pub(crate) _upstream_slot: Option<OwnedSemaphorePermit>,
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

impl<B> Watched<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner,
            held: None,
            idle: None,
        }
    }

    pub(crate) fn idle_after(mut self, idle: Duration) -> Self {
        self.idle = Some((idle, Box::pin(tokio::time::sleep(idle))));
        self
    }

    pub(crate) fn holding(mut self, held: Held) -> Self {
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

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::Poll;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::{Held, StreamIdle, Watched};
    use crate::io::Activity;

    #[tokio::test]
    async fn the_exchange_stays_open_until_the_response_body_is_sent() {
        let activity = Activity::new();
        let body = Watched::new(Full::new(Bytes::from_static(b"hello"))).holding(Held {
            exchange: activity.request(),
            _upstream_slot: None,
        });
        assert_eq!(activity.open_exchanges(), 1);
        let collected = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(collected.ok(), Some(Bytes::from_static(b"hello")));
        assert_eq!(activity.open_exchanges(), 0);
    }

    /// A body that never yields a frame.
    struct Stalled;

    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_moving_is_cut_at_the_stream_idle_deadline() {
        let activity = Activity::new();
        let body = Watched::new(Stalled)
            .idle_after(Duration::from_secs(30))
            .holding(Held {
                exchange: activity.request(),
                _upstream_slot: None,
            });
        let started = tokio::time::Instant::now();
        let result = body.collect().await;
        let error = result.expect_err("cut");
        assert!(error.is::<StreamIdle>(), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(activity.open_exchanges(), 0, "the exchange is released");
    }
}
