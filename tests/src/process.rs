//! Processes under test.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a process gets to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(3);
/// How much of the log is printed when a test panics while the process is alive.
const LOG_TAIL_ON_PANIC: usize = 16 * 1024;

/// A signal [`Proc::signal`] can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: tlsgate reloads its configuration.
    Hup,
    /// SIGINT
    Int,
    /// SIGTERM: graceful shutdown.
    Term,
    /// SIGKILL
    Kill,
    /// SIGUSR1
    Usr1,
    /// SIGUSR2
    Usr2,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Int => "INT",
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
            Signal::Usr1 => "USR1",
            Signal::Usr2 => "USR2",
        }
    }
}

/// A running child process whose stdout and stderr go to one log file.
///
/// Dropping it stops the process (SIGTERM, then SIGKILL after 3 s) and waits for it, so no test
/// leaves a server behind. If the test is panicking, the tail of the log is printed first, which
/// is usually the explanation of the failure.
pub struct Proc {
    name: String,
    pid: u32,
    /// Behind a mutex so that observing the process (`wait_for_log`) needs only `&self`.
    child: Mutex<Child>,
    /// Signals go to the whole process group the child leads ([`Proc::spawn_group`]).
    group: bool,
    log_path: PathBuf,
    _log_dir: TempDir,
}

impl fmt::Debug for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proc")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("log_path", &self.log_path)
            .finish()
    }
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout+stderr appended to `<tmp>/<name>.log`.
    ///
    /// `name` only labels messages and the log file.
    pub fn spawn(name: &str, cmd: Command) -> Proc {
        Self::start(name, cmd, false)
    }

    /// As [`Proc::spawn`], for a server that forks workers: the child leads a new process
    /// group and every signal, the final SIGKILL included, goes to the group, so no worker
    /// outlives the test (`openssl ocsp -multi`'s parent, for one, ignores SIGTERM until a
    /// worker exits).
    pub fn spawn_group(name: &str, mut cmd: Command) -> Proc {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
        Self::start(name, cmd, true)
    }

    fn start(name: &str, mut cmd: Command, group: bool) -> Proc {
        let log_dir = tempfile::Builder::new()
            .prefix(&format!("tlsgate-e2e-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir for the {name} log: {e}"));
        let log_path = log_dir.path().join(format!("{name}.log"));
        // One append-mode file for both streams keeps their lines interleaved in time order.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let log_err = clone_file(&log, &log_path);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({:?}): {e}", cmd.get_program()));
        Proc {
            name: name.to_owned(),
            pid: child.id(),
            child: Mutex::new(child),
            group,
            log_path,
            _log_dir: log_dir,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// The label given to [`Proc::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where stdout and stderr are written.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the process has written so far, stdout and stderr interleaved.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("<could not read {}: {e}>", self.log_path.display()))
    }

    /// The current length of the log in bytes, to wait for something that happens *after* now
    /// with [`Proc::wait_for_log_after`] (e.g. a second "reloaded" line after SIGHUP).
    pub fn log_len(&self) -> usize {
        self.log().len()
    }

    /// Waits until the log contains `needle`.
    ///
    /// Fails at once if the process exits first, and with the whole log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        self.wait_for_log_after(0, needle, timeout)
    }

    /// Waits until the log, from byte `offset` on, contains `needle`.
    pub fn wait_for_log_after(
        &self,
        offset: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.get(offset..).is_some_and(|rest| rest.contains(needle)) {
                return Ok(());
            }
            if let Some(status) = self.try_exit() {
                // The process may have written the line just before exiting.
                let log = self.log();
                if log.get(offset..).is_some_and(|rest| rest.contains(needle)) {
                    return Ok(());
                }
                return Err(format!(
                    "{} exited ({status}) before logging {needle:?}; its log:\n{log}",
                    self.name
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not log {needle:?} within {timeout:?}; its log:\n{log}",
                    self.name
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends `signal` with the `kill` command (no libc, no unsafe).
    pub fn signal(&self, signal: Signal) -> Result<(), String> {
        let target = if self.group {
            format!("-{}", self.id())
        } else {
            self.id().to_string()
        };
        let out = Command::new("kill")
            .arg("-s")
            .arg(signal.name())
            .arg("--")
            .arg(target)
            .output()
            .map_err(|e| format!("running kill -s {}: {e}", signal.name()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "kill -s {} {} ({}) failed: {}",
                signal.name(),
                self.id(),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.poll_exit(timeout)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit(&self) -> Option<ExitStatus> {
        // An error here means the child was already reaped, which only `stop` does.
        self.lock().try_wait().ok().flatten()
    }

    /// Stops the process as [`Drop`] does (SIGTERM, SIGKILL after 3 s) and returns how it
    /// ended, to assert on a graceful shutdown. `None` only if waiting for it failed.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.terminate()
    }

    fn poll_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn terminate(&self) -> Option<ExitStatus> {
        if let Some(status) = self.try_exit() {
            return Some(status);
        }
        // A failed SIGTERM means the process is already gone; poll_exit notices.
        let _ = self.signal(Signal::Term);
        if let Some(status) = self.poll_exit(GRACE) {
            return Some(status);
        }
        if self.group {
            let _ = self.signal(Signal::Kill);
        }
        let mut child = self.lock();
        let _ = child.kill();
        child.wait().ok()
    }

    fn lock(&self) -> MutexGuard<'_, Child> {
        // A poisoned lock only means another thread panicked while polling; the Child is intact.
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = self.log();
            let mut start = log.len().saturating_sub(LOG_TAIL_ON_PANIC);
            while !log.is_char_boundary(start) {
                start += 1;
            }
            eprintln!(
                "---- {} log (pid {}, last {} bytes) ----\n{}\n---- end of {} log ----",
                self.name,
                self.pid,
                log.len() - start,
                &log[start..],
                self.name
            );
        }
        // Nothing useful can be done with a failure here, and panicking in drop would abort.
        let _ = self.terminate();
    }
}

fn clone_file(file: &File, path: &Path) -> File {
    file.try_clone()
        .unwrap_or_else(|e| panic!("duplicating the handle of {}: {e}", path.display()))
}
