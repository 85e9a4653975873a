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
    /// For HTTP/2 connections: the client's control frames, metered.
    control: Option<ControlFrames>,
}

/// Counts the PING and SETTINGS frames an HTTP/2 client sends (each asks the server for an
/// answer) in a token bucket, and fails the connection's reads past it: hyper then closes the
/// connection, as Envoy does past `max_outbound_control_frames`. A client that floods them and
/// never reads the answers otherwise keeps the connection's task busy until TCP backpressure
/// stops it (the reliability suite measured ~9 s of CPU for one flood).
#[derive(Debug)]
pub struct ControlFrames {
    /// Client preface bytes still to skip.
    preface: usize,
    /// The frame header being read.
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    tokens: f64,
    refilled: Instant,
}

impl ControlFrames {
    /// A burst this large is allowed at once (Envoy's `max_outbound_control_frames`)...
    const BURST: f64 = 1000.0;
    /// ...refilled at this rate per second.
    const PER_SECOND: f64 = 100.0;
    const PREFACE: usize = 24;

    fn new() -> Self {
        Self {
            preface: Self::PREFACE,
            header: [0; 9],
            have: 0,
            skip: 0,
            tokens: Self::BURST,
            refilled: Instant::now(),
        }
    }

    /// Feeds bytes the client sent; `false` once it has sent too many control frames.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
            } else if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
            } else {
                let n = (9 - self.have).min(bytes.len());
                self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have == 9 {
                    self.have = 0;
                    let h = self.header;
                    self.skip =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    const SETTINGS: u8 = 0x4;
                    const PING: u8 = 0x6;
                    const ACK: u8 = 0x1;
                    if matches!(h[3], SETTINGS | PING) && h[4] & ACK == 0 && !self.take() {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * Self::PER_SECOND).min(Self::BURST);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

impl<T> Tracked<T> {
    /// Every successful read or write is activity.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            track: Track::Bytes,
            control: None,
        }
    }

    /// Reads with no exchange open start a request head's deadline; writes are not activity
    /// (an HTTP connection's idleness is counted in exchanges).
    pub fn heads(inner: T, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            track: Track::Heads,
            control: None,
        }
    }

    /// Meters the client's HTTP/2 control frames (see [`ControlFrames`]).
    #[must_use]
    pub fn http2(mut self) -> Self {
        self.control = Some(ControlFrames::new());
        self
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
            let this = &mut *self;
            if let Some(control) = &mut this.control {
                if !control.feed(&buf.filled()[before..]) {
                    tracing::info!(reason = "http2_control_frame_flood", "closing: the client sent more PING/SETTINGS frames than {} at once and {}/s", ControlFrames::BURST, ControlFrames::PER_SECOND);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "HTTP/2 control frame flood",
                    )));
                }
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
    async fn a_control_frame_flood_is_cut_and_a_steady_trickle_is_not() {
        let ping = [0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let ack = [0, 0, 8, 0x6, 0x1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut meter = ControlFrames::new();
        assert!(meter.feed(&[b'x'; 24]), "the preface is skipped");
        // Frames split at every byte boundary are still frames.
        for _ in 0..1000 {
            for b in ping {
                assert!(meter.feed(&[b]));
            }
        }
        assert!(!meter.feed(&ping), "the 1001st PING at once is a flood");
        let mut meter = ControlFrames::new();
        meter.feed(&[b'x'; 24]);
        for _ in 0..5000 {
            assert!(meter.feed(&ack), "ACKs ask for nothing");
        }
        for _ in 0..3000 {
            tokio::time::advance(Duration::from_millis(20)).await;
            assert!(meter.feed(&ping), "50 PINGs a second is within the rate");
        }
        // A DATA frame's payload that looks like a PING header is payload.
        let mut data = vec![0, 0, 17, 0x0, 0, 0, 0, 0, 1];
        data.extend_from_slice(&ping);
        let mut meter = ControlFrames::new();
        meter.feed(&[b'x'; 24]);
        for _ in 0..5000 {
            assert!(meter.feed(&data));
        }
    }

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

/// A copy of the bytes the TLS acceptor reads before it has the ClientHello, for its JA4
/// fingerprint ([`tlsgate_core::ja4`]). rustls hands over a parsed ClientHello only, without
/// the extension order JA4 needs. The acceptor keeps what it read, so once it has the
/// ClientHello the stream comes back out unchanged ([`HelloTap::into_parts`]).
#[derive(Debug)]
pub struct HelloTap<T> {
    inner: T,
    /// `None`: nothing is kept (no rule reads JA4).
    copy: Option<Vec<u8>>,
}

impl<T> HelloTap<T> {
    /// At most this much is copied: rustls refuses longer ClientHellos anyway.
    const LIMIT: usize = 64 * 1024 + 5 * 8;

    /// Keeps what is read when `keep`, else only passes it on.
    pub fn new(inner: T, keep: bool) -> Self {
        Self {
            inner,
            copy: keep.then(Vec::new),
        }
    }

    /// The stream and the bytes read from it so far (none when not kept).
    pub fn into_parts(self) -> (T, Vec<u8>) {
        (self.inner, self.copy.unwrap_or_default())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HelloTap<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(copy)) = (&poll, &mut self.copy) {
            let room = Self::LIMIT.saturating_sub(copy.len());
            let read = buf.filled().get(before..).unwrap_or_default();
            let take = read.len().min(room);
            copy.extend_from_slice(read.get(..take).unwrap_or_default());
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HelloTap<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
