//! A stream wrapper that remembers when bytes last moved, for idle deadlines.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When a connection last showed activity, and how many exchanges are open. HTTP connections
/// count exchanges (a request until its response body is sent); TCP sessions count bytes
/// through [`Tracked`].
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    /// Milliseconds since `origin`.
    last: AtomicU64,
    /// Open exchanges: not idle, whatever the bytes say.
    in_flight: AtomicUsize,
    /// Whether any exchange has started (for the first-request deadline).
    started: std::sync::atomic::AtomicBool,
    /// When the first byte of a request head arrived while no exchange was open, in
    /// milliseconds since `origin` plus one; 0 while none is pending. The header deadline runs
    /// from here: a connection waiting between requests is idle, not slow.
    head: AtomicU64,
    head_started: tokio::sync::Notify,
    /// For each open exchange, when hyper last asked its response body for data (milliseconds
    /// since `origin`; `u64::MAX` until the response is handed over). See
    /// [`Activity::response_stalled`].
    responses: std::sync::Mutex<Vec<std::sync::Weak<AtomicU64>>>,
    responding: tokio::sync::Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started: std::sync::atomic::AtomicBool::new(false),
            head: AtomicU64::new(0),
            head_started: tokio::sync::Notify::new(),
            responses: std::sync::Mutex::new(Vec::new()),
            responding: tokio::sync::Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn touch(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Bytes arrived: with no exchange open they begin a request head (HTTP/1), and its
    /// deadline starts now unless it already runs.
    fn head_bytes(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self
                .head
                .compare_exchange(0, self.now_ms() + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.head_started.notify_one();
        }
    }

    /// Resolves once a request head has been arriving for `limit` without completing (no
    /// exchange opened since its first byte). Waiting between requests does not count.
    pub async fn head_overdue(&self, limit: Duration) {
        loop {
            let head = self.head.load(Ordering::Relaxed);
            if head == 0 {
                self.head_started.notified().await;
                continue;
            }
            let deadline = self.origin + Duration::from_millis(head - 1) + limit;
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if self.head.load(Ordering::Relaxed) == head
                        && self.in_flight.load(Ordering::Relaxed) == 0
                    {
                        return;
                    }
                }
                () = self.head_started.notified() => {}
            }
        }
    }

    /// Marks an exchange as open until the guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.store(true, Ordering::Relaxed);
        // Its head is complete: hyper parsed it.
        self.head.store(0, Ordering::Relaxed);
        self.touch();
        let polled = Arc::new(AtomicU64::new(u64::MAX));
        let mut responses = self
            .responses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        responses.retain(|r| r.strong_count() > 0);
        responses.push(Arc::downgrade(&polled));
        drop(responses);
        InFlight {
            activity: self.clone(),
            polled,
        }
    }

    /// When hyper last asked any open exchange's response body for data, the oldest of them
    /// (milliseconds since `origin`); `None` when no response is being sent.
    fn oldest_response(&self) -> Option<u64> {
        let mut responses = self
            .responses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        responses.retain(|r| r.strong_count() > 0);
        responses
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|p| p.load(Ordering::Relaxed))
            .filter(|&ms| ms != u64::MAX)
            .min()
    }

    /// Resolves once a response being sent has not been asked for data for `limit`: the client
    /// reads nothing (an HTTP/2 stream without flow-control window, a socket whose buffer stays
    /// full). hyper polls a body only when it can send, so the body's own idle timer (which
    /// covers a stalled upstream) never sees this case.
    pub async fn response_stalled(&self, limit: Duration) {
        loop {
            let Some(oldest) = self.oldest_response() else {
                self.responding.notified().await;
                continue;
            };
            let deadline = self.origin + Duration::from_millis(oldest) + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = self.responding.notified() => {}
            }
        }
    }

    /// Whether any exchange has started on this connection.
    pub fn any_request(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// How many exchanges are open.
    pub fn open_exchanges(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Resolves once nothing has moved for `idle` and no request is waiting.
    pub async fn idle(&self, idle: Duration) {
        loop {
            let last = self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                if self.in_flight.load(Ordering::Relaxed) == 0 {
                    return;
                }
                // Busy: look again after another period.
                self.touch();
                continue;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// An open exchange; see [`Activity::request`].
#[derive(Debug)]
pub struct InFlight {
    activity: Arc<Activity>,
    polled: Arc<AtomicU64>,
}

impl InFlight {
    /// Its response is handed to hyper: from now on hyper should keep asking for its body.
    pub fn responding(&self) {
        self.polled();
        self.activity.responding.notify_one();
    }

    /// hyper asked the response body for data.
    pub fn polled(&self) {
        self.polled.store(self.activity.now_ms(), Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.activity.touch();
    }
}

/// What a [`Tracked`] stream tells its [`Activity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    /// Every byte either way is activity (tls:// tunnels, WebSocket: idleness is bytes).
    Bytes,
    /// Bytes read with no exchange open begin a request head, for the HTTP/1 header deadline.
    /// hyper's own `header_read_timeout` starts when it begins waiting for a head, so on a
    /// kept-alive connection it also cut the wait between requests: every connection idle for
    /// longer than the header deadline was closed (the reliability suite's 10,000 held
    /// connections found it). HTTP/2 has no head to time here: its header blocks are frames.
    Heads,
}

/// `T`, reporting its reads (and, for [`Track::Bytes`], writes) to an [`Activity`].
#[derive(Debug)]
pub struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
    track: Track,
}

impl<T> Tracked<T> {
    /// Every successful read or write is activity.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            track: Track::Bytes,
        }
    }

    /// Reads with no exchange open start a request head's deadline; writes are not activity
    /// (an HTTP connection's idleness is counted in exchanges).
    pub fn heads(inner: T, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            track: Track::Heads,
        }
    }

    fn wrote(&self, poll: &Poll<io::Result<usize>>) {
        if self.track == Track::Bytes && matches!(poll, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            match self.track {
                Track::Bytes => self.activity.touch(),
                Track::Heads => self.activity.head_bytes(),
            }
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_header_deadline_runs_from_a_heads_first_byte_not_from_the_wait() {
        let activity = Activity::new();
        let limit = Duration::from_secs(10);
        // A kept-alive connection waiting for its next request: no deadline, however long.
        let overdue = activity.head_overdue(limit);
        tokio::pin!(overdue);
        assert!(tokio::time::timeout(Duration::from_secs(600), &mut overdue)
            .await
            .is_err());
        // The first byte of a head starts it; completing the head (an exchange) stops it.
        activity.head_bytes();
        tokio::time::sleep(Duration::from_secs(9)).await;
        let exchange = activity.request();
        assert!(tokio::time::timeout(Duration::from_secs(600), &mut overdue)
            .await
            .is_err());
        // Bytes during an exchange (a body) are not a head.
        activity.head_bytes();
        assert!(tokio::time::timeout(Duration::from_secs(600), &mut overdue)
            .await
            .is_err());
        drop(exchange);
        // The next head that never completes is cut at the deadline, counted from its first byte.
        tokio::time::sleep(Duration::from_secs(100)).await;
        activity.head_bytes();
        let started = Instant::now();
        overdue.await;
        assert_eq!(started.elapsed(), limit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_nobody_asks_for_is_stalled_one_that_is_polled_is_not() {
        let activity = Activity::new();
        let limit = Duration::from_secs(60);
        let stalled = activity.response_stalled(limit);
        tokio::pin!(stalled);
        // An exchange still deciding (no response yet) is not a stalled response.
        let exchange = activity.request();
        assert!(tokio::time::timeout(Duration::from_secs(600), &mut stalled)
            .await
            .is_err());
        // A response polled every 30 s keeps moving.
        exchange.responding();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(30)).await;
            exchange.polled();
        }
        assert!(tokio::time::timeout(Duration::from_secs(1), &mut stalled)
            .await
            .is_err());
        // Not asked for data for `limit` (after the last poll): stalled.
        let started = Instant::now();
        stalled.await;
        assert_eq!(started.elapsed() + Duration::from_secs(1), limit);
        // A finished exchange counts no more.
        drop(exchange);
        assert_eq!(activity.oldest_response(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_when_no_exchange_is_open() {
        let activity = Activity::new();
        let exchange = activity.request();
        let idle = activity.idle(Duration::from_secs(60));
        tokio::pin!(idle);
        // However long an exchange stays open, the connection is not idle.
        assert!(tokio::time::timeout(Duration::from_secs(600), &mut idle)
            .await
            .is_err());
        drop(exchange);
        // Once it ends, the idle period starts from there.
        assert!(tokio::time::timeout(Duration::from_secs(59), &mut idle)
            .await
            .is_err());
        assert!(tokio::time::timeout(Duration::from_secs(2), &mut idle)
            .await
            .is_ok());
    }
}
