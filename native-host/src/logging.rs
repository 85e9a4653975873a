//! Log output: `tracing` to stderr, as text or JSON lines. `RUST_LOG` overrides the default
//! level (`info`). Nothing logged carries key material or raw policy text.
//!
//! Access lines can be buffered (`--access-log-buffer`, nginx's `access_log … buffer= flush=`):
//! they are collected in memory and written together when the buffer fills, when the flush
//! interval passes, when any other line is logged (so the stream keeps its order and warnings
//! are never late) and when the process exits.

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::Metadata;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The `tracing` target of access lines, the one kind of line that may wait in a buffer.
pub const ACCESS_TARGET: &str = "tlsgate::access";

/// `--access-log-buffer SIZE --access-log-flush TIME`: access lines wait in memory until `size`
/// bytes are pending or `flush` has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffering {
    pub size: usize,
    pub flush: Duration,
}

/// Writes what is still buffered when dropped: hold it until the process is about to exit.
#[must_use = "dropping the guard flushes the access-log buffer; hold it until exit"]
#[derive(Debug)]
pub struct LogGuard(());

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(buffer) = BUFFER.get() {
            buffer.flush();
        }
    }
}

static BUFFER: OnceLock<Buffered> = OnceLock::new();

/// Installs the global subscriber. With `buffering`, access lines go through a buffer that a
/// background thread flushes every `flush`, and a panic flushes it before the panic message.
pub fn init(format: LogFormat, buffering: Option<Buffering>) -> LogGuard {
    let writer = match buffering {
        Some(b) if b.size > 0 => {
            let buffer = BUFFER.get_or_init(|| Buffered::new(b.size, Box::new(io::stderr())));
            start_flusher(buffer, b.flush);
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                buffer.flush();
                previous(info);
            }));
            Output::Buffered(buffer)
        }
        _ => Output::Stderr,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_timer(Clock)
        .with_ansi(ansi);
    // A second initialisation (only possible in tests) keeps the first subscriber.
    let installed = match format {
        LogFormat::Text => builder.fmt_fields(TextFields).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if installed.is_ok() && format == LogFormat::Text && !ansi {
        let _ = PLAIN_TEXT.set(writer);
    }
    LogGuard(())
}

/// Set when the subscriber writes uncoloured text: access lines are then written by
/// [`access`] itself, in the subscriber's layout, to the same output.
static PLAIN_TEXT: OnceLock<Output> = OnceLock::new();

/// What one request's access line says. Strings are written quoted (`sni="a.test"`), the
/// `Display` fields bare (`endpoint=https://a.test`), as tracing's fields would be.
pub(crate) struct AccessRecord<'a> {
    pub endpoint: &'a dyn fmt::Display,
    pub peer: &'a dyn fmt::Display,
    pub sni: &'a str,
    pub tls: &'a str,
    pub client: &'a dyn fmt::Display,
    pub method: &'a str,
    pub path: &'a str,
    pub verdict: &'a str,
    pub reason: &'a str,
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub duration_ms: u64,
    pub log: &'a str,
}

/// Logs one request's access line (target `tlsgate::access`, level INFO, message `request`).
///
/// With the plain text log (the default when stderr is not a terminal) the line is formatted
/// here into a reused per-thread buffer: tracing's dispatch and the subscriber's formatting
/// machinery were most of the line's cost, 14.7% of a kept-alive request's instructions
/// (`make profile`). The line is byte for byte what the subscriber writes (unit test), goes to
/// the same output (the access-log buffer when there is one), and `RUST_LOG` still decides
/// whether it is written. JSON and coloured output go through tracing.
pub(crate) fn access(r: &AccessRecord<'_>) {
    let Some(output) = PLAIN_TEXT.get() else {
        return access_event(r);
    };
    if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
        return;
    }
    thread_local! {
        static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    LINE.with(|line| {
        let Ok(mut line) = line.try_borrow_mut() else {
            return access_event(r);
        };
        line.clear();
        if write_access_line(&mut line, r, true).is_err() {
            return;
        }
        let _ = match output {
            Output::Stderr => io::stderr().write_all(line.as_bytes()),
            Output::Buffered(buffer) => buffer.append(line.as_bytes()),
        };
        if line.capacity() > 16 << 10 {
            // One huge line (a long path) does not keep its buffer for the thread's life.
            *line = String::new();
        }
    });
}

/// The access line through tracing: JSON, colours, or a subscriber of the tests'.
fn access_event(r: &AccessRecord<'_>) {
    tracing::info!(
        target: ACCESS_TARGET,
        endpoint = %r.endpoint,
        peer = %r.peer,
        sni = r.sni,
        tls = r.tls,
        client = %r.client,
        method = r.method,
        path = r.path,
        verdict = r.verdict,
        reason = r.reason,
        status = r.status,
        upstream_status = r.upstream_status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
        duration_ms = r.duration_ms,
        log = %r.log,
        "request"
    );
}

/// ` name=value` for a `%value` field: its `Display`, escaped.
fn shown(out: &mut String, name: &str, value: &dyn fmt::Display) -> fmt::Result {
    out.push(' ');
    out.push_str(name);
    out.push('=');
    write!(Escaped(out), "{value}")
}

/// ` name="value"` for a string field, as [`TextVisitor::record_str`] writes it.
fn quoted(out: &mut String, name: &str, value: &str) -> fmt::Result {
    out.push(' ');
    out.push_str(name);
    out.push('=');
    if clean(value) {
        out.push('"');
        out.push_str(value);
        out.push('"');
        Ok(())
    } else {
        write!(Escaped(out), "{value:?}")
    }
}

/// Whether `Debug` would write `value` between quotes unchanged.
fn clean(value: &str) -> bool {
    value
        .bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
}

/// The subscriber's text layout for an access line: `TIME  INFO tlsgate::access: request
/// endpoint=… peer=… …`, each value escaped as [`TextVisitor`] escapes it.
fn write_access_line(out: &mut String, r: &AccessRecord<'_>, time: bool) -> fmt::Result {
    if time {
        Clock.format_time(&mut Writer::new(out))?;
        out.push(' ');
    }
    out.push_str(" INFO ");
    out.push_str(ACCESS_TARGET);
    out.push_str(": request");
    shown(out, "endpoint", r.endpoint)?;
    shown(out, "peer", r.peer)?;
    quoted(out, "sni", r.sni)?;
    quoted(out, "tls", r.tls)?;
    shown(out, "client", r.client)?;
    quoted(out, "method", r.method)?;
    quoted(out, "path", r.path)?;
    quoted(out, "verdict", r.verdict)?;
    quoted(out, "reason", r.reason)?;
    write!(out, " status={}", r.status)?;
    match r.upstream_status {
        Some(status) => write!(out, " upstream_status=\"{status}\"")?,
        None => out.push_str(" upstream_status=\"-\""),
    }
    write!(out, " duration_ms={}", r.duration_ms)?;
    shown(out, "log", &r.log)?;
    out.push('\n');
    Ok(())
}

fn start_flusher(buffer: &'static Buffered, every: Duration) {
    let every = every.max(Duration::from_millis(1));
    let spawned = std::thread::Builder::new()
        .name("access-log-flush".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            buffer.flush();
        });
    if let Err(e) = spawned {
        // Without the timer, lines still leave when the buffer fills, another line is logged
        // or the process exits; say so rather than fail to start.
        eprintln!("warning: no access-log flush thread ({e}); lines wait for a full buffer");
    }
}

/// Where the subscriber writes: straight to stderr, or through the access-line buffer.
#[derive(Clone, Copy)]
enum Output {
    Stderr,
    Buffered(&'static Buffered),
}

impl<'a> MakeWriter<'a> for Output {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match self {
            Output::Stderr => LineWriter::Stderr(io::stderr()),
            Output::Buffered(buffer) => LineWriter::Now(buffer),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        match self {
            Output::Buffered(buffer) if meta.target() == ACCESS_TARGET => LineWriter::Later(buffer),
            _ => self.make_writer(),
        }
    }
}

/// One line's writer (tracing-subscriber writes each formatted line with one `write_all`).
enum LineWriter<'a> {
    Stderr(io::Stderr),
    /// An access line: appended to the buffer.
    Later(&'a Buffered),
    /// Any other line: what is buffered goes first, then the line, at once.
    Now(&'a Buffered),
}

impl io::Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        match self {
            LineWriter::Stderr(out) => out.write(line),
            LineWriter::Later(buffer) => buffer.append(line).map(|()| line.len()),
            LineWriter::Now(buffer) => buffer.write_through(line).map(|()| line.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LineWriter::Stderr(out) => out.flush(),
            LineWriter::Later(_) | LineWriter::Now(_) => Ok(()),
        }
    }
}

/// Pending access lines and the sink they go to, under one lock so lines never interleave or
/// reorder.
struct Buffered {
    size: usize,
    state: Mutex<Pending>,
}

struct Pending {
    bytes: Vec<u8>,
    sink: Box<dyn io::Write + Send>,
}

impl Buffered {
    fn new(size: usize, sink: Box<dyn io::Write + Send>) -> Self {
        Buffered {
            size,
            state: Mutex::new(Pending {
                bytes: Vec::with_capacity(size),
                sink,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves at worst a partly written batch: keep logging.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) -> io::Result<()> {
        let mut pending = self.lock();
        if pending.bytes.len() + line.len() > self.size {
            pending.write_out()?;
        }
        if line.len() >= self.size {
            return pending.sink.write_all(line);
        }
        pending.bytes.extend_from_slice(line);
        Ok(())
    }

    fn write_through(&self, line: &[u8]) -> io::Result<()> {
        let mut pending = self.lock();
        if pending.bytes.is_empty() {
            return pending.sink.write_all(line);
        }
        // One write for both, as the buffer would have done.
        pending.bytes.extend_from_slice(line);
        pending.write_out()
    }

    /// Writes out whatever is pending; errors are dropped as stderr's are.
    fn flush(&self) {
        let _ = self.lock().write_out();
    }
}

impl Pending {
    fn write_out(&mut self) -> io::Result<()> {
        if self.bytes.is_empty() {
            return Ok(());
        }
        let result = self.sink.write_all(&self.bytes);
        // A failed write loses the batch, as an unbuffered one would lose its line; the next
        // lines still get their chance.
        self.bytes.clear();
        result.and_then(|()| self.sink.flush())
    }
}

/// `--access-log-buffer`: a size in bytes, `k` (KiB) or `m` (MiB), e.g. `64k`; at most 16m.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let scale: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("`{text}` is not a size; write e.g. 64k or 1m")),
    };
    let size = number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("`{text}` is not a size; write e.g. 64k or 1m"))?;
    if size > 16 << 20 {
        return Err(format!(
            "`{text}` is more than the 16m an access-log buffer may hold"
        ));
    }
    Ok(size)
}

/// The lines' timestamp, as tracing-subscriber writes it (`2026-11-30T01:08:38.123456Z`, UTC),
/// with the date and time of day formatted once a second per thread instead of per line (its
/// formatter was 2.4% of a kept-alive request's instructions).
struct Clock;

impl FormatTime for Clock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        thread_local! {
            static SECOND: std::cell::RefCell<(u64, String)> =
                const { std::cell::RefCell::new((u64::MAX, String::new())) };
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs();
        SECOND.with(|cached| {
            let Ok(mut cached) = cached.try_borrow_mut() else {
                return write!(w, "{}.{:06}Z", utc(secs), since.subsec_micros());
            };
            if cached.0 != secs {
                cached.1.clear();
                write!(cached.1, "{}", utc(secs))?;
                cached.0 = secs;
            }
            write!(w, "{}.{:06}Z", cached.1, since.subsec_micros())
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the epoch (UTC), by Howard Hinnant's civil-from-days.
fn utc(secs: u64) -> Utc {
    Utc(secs)
}

struct Utc(u64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = i64::try_from(self.0 / 86_400).unwrap_or(i64::MAX / 2);
        let rem = self.0 % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let (h, m, s) = (rem / 3_600, rem % 3_600 / 60, rem % 60);
        write!(f, "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}")
    }
}

/// The text log's fields: tracing-subscriber's layout (`message name=value …`, strings quoted)
/// written straight to the line. The stock formatter runs every field name and `=` through its
/// styling types even with colours off: that was 7% of a kept-alive request's instructions
/// (callgrind, `make profile`), the access line 18% in all. Every value also goes through
/// [`Escaped`], so nothing a client sends (a certificate's subject, an error carrying peer
/// bytes) can put a newline or a terminal escape in the log and forge a line.
struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    fn write(&mut self, name: &str, value: &dyn fmt::Debug) -> fmt::Result {
        if !self.first {
            self.writer.write_char(' ')?;
        }
        self.first = false;
        if name != "message" {
            self.writer
                .write_str(name.strip_prefix("r#").unwrap_or(name))?;
            self.writer.write_char('=')?;
        }
        write!(Escaped(&mut self.writer), "{value:?}")
    }
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else if self.result.is_ok() && clean(value) {
            // What `Debug` would write for a string it need not escape, without its per-char
            // escaping machinery (a third of the line's cost).
            self.result = self.write(field.name(), &Quoted(value));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `log` records' metadata, which the line's prefix already shows.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = self.write(field.name(), value);
    }
}

/// A string that needs no escaping, in quotes: `Debug` without the per-char work.
struct Quoted<'a>(&'a str);

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        f.write_str(self.0)?;
        f.write_char('"')
    }
}

/// Writes through to `W`, escaping control characters (C0 but tab, DEL, C1) as `\u{…}`, as
/// Rust's `Debug` for strings does. Clean text (nearly all of it) is written in one piece.
struct Escaped<W>(W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let control = |c: char| c.is_control() && c != '\t';
        if !s.contains(control) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            if control(c) {
                write!(self.0, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        }
    }

    /// One access-like event, through the stock field formatter or ours.
    fn line(ours: bool, client: &str, message: &str) -> String {
        line_with_path(ours, client, message, "/")
    }

    fn line_with_path(ours: bool, client: &str, message: &str, path: &str) -> String {
        let out = Captured::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .without_time();
        let event = || {
            tracing::info!(
                target: "tlsgate::access",
                endpoint = %"https://a.test",
                sni = "a.test",
                client = %client,
                status = 200u16,
                path,
                r#type = "x",
                "request {message}"
            );
        };
        if ours {
            tracing::subscriber::with_default(builder.fmt_fields(TextFields).finish(), event);
        } else {
            tracing::subscriber::with_default(builder.finish(), event);
        }
        out.text()
    }

    #[test]
    fn clean_lines_are_the_stock_formatter_s_byte_for_byte() {
        let ours = line(true, "CN=alice", "done");
        assert_eq!(ours, line(false, "CN=alice", "done"));
        assert!(
            ours.ends_with(
                "request done endpoint=https://a.test sni=\"a.test\" client=CN=alice status=200 path=\"/\" type=\"x\"\n"
            ),
            "{ours}"
        );
        // Strings the fast path leaves to `Debug`: quotes, backslashes, non-ASCII.
        for path in ["/a\"b", "/a\\b", "/caf\u{e9}", "/\u{301}"] {
            assert_eq!(
                line_with_path(true, "CN=alice", "done", path),
                line_with_path(false, "CN=alice", "done", path)
            );
        }
    }

    #[test]
    fn timestamps_are_utc_civil_time() {
        assert_eq!(utc(0).to_string(), "1970-01-01T00:00:00");
        assert_eq!(utc(951_782_400).to_string(), "2000-02-29T00:00:00");
        assert_eq!(utc(1_796_000_918).to_string(), "2026-11-30T01:08:38");
        assert_eq!(utc(4_102_444_799).to_string(), "2099-12-31T23:59:59");
        // The stock timer, for the same second (retried if a second boundary falls between).
        for _ in 0..3 {
            let mut ours = String::new();
            let mut stock = String::new();
            Clock.format_time(&mut Writer::new(&mut ours)).unwrap();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut stock))
                .unwrap();
            if ours[..19] == stock[..19] {
                assert_eq!(ours.len(), stock.len(), "{ours} {stock}");
                return;
            }
        }
        panic!("the clock never agreed with tracing-subscriber's");
    }

    #[test]
    fn control_characters_cannot_forge_a_line_or_drive_a_terminal() {
        let ours = line(
            true,
            "CN=x\nINFO verdict=allow\r\u{1b}[2J\u{85}",
            "a\nb\u{7f}",
        );
        assert_eq!(ours.matches('\n').count(), 1, "{ours}");
        assert!(
            ours.contains(
                "request a\\u{a}b\\u{7f} endpoint=https://a.test sni=\"a.test\" \
                 client=CN=x\\u{a}INFO verdict=allow\\u{d}\\u{1b}[2J\\u{85} "
            ),
            "{ours}"
        );
        // A tab is text, not a control sequence.
        assert!(line(true, "a\tb", "").contains("client=a\tb "));
    }

    /// A sink that records each write(2) it would have made.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl std::io::Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Writes {
        fn all(&self) -> Vec<String> {
            let writes = self.0.lock().unwrap_or_else(|e| e.into_inner());
            writes
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect()
        }
    }

    fn buffered(size: usize) -> (&'static Buffered, Writes) {
        let sink = Writes::default();
        (
            Box::leak(Box::new(Buffered::new(size, Box::new(sink.clone())))),
            sink,
        )
    }

    #[test]
    fn access_lines_wait_and_any_other_line_takes_them_out_first_in_one_write() {
        let (buffer, sink) = buffered(1024);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Output::Buffered(buffer))
            .with_ansi(false)
            .without_time()
            .fmt_fields(TextFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "tlsgate::access", "first");
            tracing::info!(target: "tlsgate::access", "second");
            assert!(sink.all().is_empty(), "{:?}", sink.all());
            tracing::warn!("reloaded");
        });
        let writes = sink.all();
        assert_eq!(writes.len(), 1, "{writes:?}");
        let lines: Vec<&str> = writes[0].lines().collect();
        assert_eq!(lines.len(), 3, "{writes:?}");
        assert!(
            lines[0].ends_with("first") && lines[1].ends_with("second"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("WARN") && lines[2].ends_with("reloaded"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_full_buffer_is_written_before_the_line_that_would_overflow_it() {
        let (buffer, sink) = buffered(10);
        buffer.append(b"aaaa\n").unwrap();
        buffer.append(b"bbbb\n").unwrap();
        assert!(sink.all().is_empty());
        buffer.append(b"cccc\n").unwrap();
        assert_eq!(sink.all(), ["aaaa\nbbbb\n"]);
        buffer.flush();
        assert_eq!(sink.all(), ["aaaa\nbbbb\n", "cccc\n"]);
        buffer.flush();
        assert_eq!(sink.all().len(), 2, "an empty buffer writes nothing");
    }

    #[test]
    fn a_line_longer_than_the_buffer_goes_out_whole_after_what_was_pending() {
        let (buffer, sink) = buffered(8);
        buffer.append(b"ab\n").unwrap();
        buffer.append(b"0123456789\n").unwrap();
        assert_eq!(sink.all(), ["ab\n", "0123456789\n"]);
    }

    #[test]
    fn buffer_sizes_are_read_as_people_write_them() {
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("64q").unwrap_err().contains("not a size"));
        assert!(parse_size("k").is_err());
        assert!(parse_size("17m").unwrap_err().contains("16m"));
        assert!(parse_size("99999999999999999999k").is_err());
    }

    /// One access record through tracing (the stock path) and through [`write_access_line`].
    fn both_ways(r: &AccessRecord<'_>) -> (String, String) {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(TextFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || access_event(r));
        let mut ours = String::new();
        write_access_line(&mut ours, r, false).unwrap();
        (out.text(), ours)
    }

    #[test]
    fn the_hand_written_access_line_is_the_subscriber_s_byte_for_byte() {
        let peer: std::net::SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let clean = AccessRecord {
            endpoint: &"https://a.test",
            peer: &peer,
            sni: "a.test",
            tls: "1.3",
            client: &"CN=alice,O=Payments",
            method: "GET",
            path: "/a/b?c=d",
            verdict: "forward",
            reason: "-",
            status: 200,
            upstream_status: Some(200),
            duration_ms: 3,
            log: "-",
        };
        let (stock, ours) = both_ways(&clean);
        assert_eq!(stock, ours);
        assert!(
            ours.contains(r#" path="/a/b?c=d" verdict="forward""#),
            "{ours}"
        );
        let hostile = AccessRecord {
            sni: "a.test\n2026-01-01T00:00:00Z  INFO forged",
            client: &"CN=a\u{1b}[31mred\"quoted\\",
            path: "/\"x\"\\y\u{7f}é",
            method: "G\tET",
            reason: "",
            upstream_status: None,
            log: "k=\"v\"\r\n",
            ..clean
        };
        let (stock, ours) = both_ways(&hostile);
        assert_eq!(stock, ours);
        assert_eq!(ours.lines().count(), 1, "{ours}");
    }
}
