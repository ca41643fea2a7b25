//! A child process started by a test: killed when dropped (also when the
//! test panics), with every line it prints on stdout and stderr kept so that
//! fixtures can wait for a line and a failed test shows the process's last
//! output.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How many lines of a process's output a failing test prints.
const TAIL_LINES: usize = 40;

/// How long dropping a process waits for it to die after SIGKILL.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// Lines a process printed, in order, from stdout and stderr together.
#[derive(Debug, Clone, Default)]
pub struct Output {
    lines: Arc<Mutex<Vec<String>>>,
    changed: Arc<Notify>,
}

impl Output {
    /// How many lines so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True before the first line.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// All lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// The last `n` lines, one per line.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lock();
        let start = lines.len().saturating_sub(n);
        lines[start..].join("\n")
    }

    /// The first line at index `from` or later that `parse` accepts.
    fn find<T>(&self, from: usize, parse: &mut impl FnMut(&str) -> Option<T>) -> Option<T> {
        let lines = self.lock();
        lines.iter().skip(from).find_map(|line| parse(line))
    }

    fn push(&self, line: String) {
        self.lock().push(line);
        self.changed.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, Vec<String>> {
        // A panic while holding the lock leaves the lines intact.
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running child process.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    output: Output,
}

impl ChildProcess {
    /// Starts `command` with stdin, stdout and stderr piped. `name` labels the
    /// process in errors. Stdin stays open until the process is dropped, so a
    /// child that exits on EOF (the test backend does) never outlives the
    /// test.
    pub fn spawn(name: &str, mut command: Command) -> Result<Self> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        let output = Output::default();
        if let Some(stdout) = child.stdout.take() {
            collect(stdout, output.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            collect(stderr, output.clone());
        }
        let stdin = child.stdin.take();
        Ok(Self {
            name: name.to_owned(),
            child,
            stdin,
            output,
        })
    }

    /// The label given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// What the process printed so far.
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// Writes `line` and a newline to the process's stdin.
    pub async fn send_line(&mut self, line: &str) -> Result<()> {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .with_context(|| format!("{name}'s stdin is closed"))?;
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        stdin
            .write_all(&bytes)
            .await
            .with_context(|| format!("writing to {name}'s stdin"))?;
        stdin
            .flush()
            .await
            .with_context(|| format!("flushing {name}'s stdin"))?;
        Ok(())
    }

    /// Waits until a line at index `from` or later (see [`Output::len`])
    /// satisfies `parse`, and returns what `parse` made of it. Fails, showing
    /// the process's last lines, on timeout or if the process exits first.
    pub async fn wait_for_line<T>(
        &mut self,
        from: usize,
        what: &str,
        timeout: Duration,
        mut parse: impl FnMut(&str) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            // Register for the next line before looking, so none is missed.
            let changed = self.output.changed.clone();
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = self.output.find(from, &mut parse) {
                return Ok(found);
            }
            if let Some(status) = self
                .child
                .try_wait()
                .with_context(|| format!("checking on {}", self.name))?
            {
                // Let the readers drain what the process printed last.
                let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
                if let Some(found) = self.output.find(from, &mut parse) {
                    return Ok(found);
                }
                bail!(
                    "{} exited ({status}) before printing {what}; its last output:\n{}",
                    self.name,
                    self.output.tail(TAIL_LINES)
                );
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "{} did not print {what} within {timeout:?}; its last output:\n{}",
                    self.name,
                    self.output.tail(TAIL_LINES)
                );
            }
            // Wake on a new line, and now and then to notice an exit.
            let wait = (deadline - now).min(Duration::from_millis(100));
            let _ = tokio::time::timeout(wait, notified).await;
        }
    }

    /// Whether the process has exited, without waiting.
    pub fn has_exited(&mut self) -> Result<bool> {
        Ok(self
            .child
            .try_wait()
            .with_context(|| format!("checking on {}", self.name))?
            .is_some())
    }

    /// Kills the process (SIGKILL) and waits for it to exit.
    pub async fn kill(&mut self) -> Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("killing {}", self.name))
    }

    /// Sends `signal` (a name `kill -s` knows: `TERM`, `INT`, `HUP`, ...) to
    /// the process, without waiting for it to act on it. Uses the `kill`
    /// command, so the tests need no `unsafe` and no signal crate.
    pub async fn signal(&self, signal: &str) -> Result<()> {
        let name = &self.name;
        let pid = self
            .child
            .id()
            .with_context(|| format!("cannot send SIG{signal} to {name}: it has exited"))?;
        let output = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .output()
            .await
            .with_context(|| format!("running `kill -s {signal} {pid}` for {name}"))?;
        ensure!(
            output.status.success(),
            "`kill -s {signal} {pid}` for {name} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit by itself; returns how
    /// it exited. On timeout the process keeps running (drop kills it).
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = &self.name;
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.with_context(|| format!("waiting for {name} to exit")),
            Err(_) => bail!(
                "{name} did not exit within {timeout:?}; its last output:\n{}",
                self.output.tail(TAIL_LINES)
            ),
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // `kill_on_drop` kills the process. Its last lines go to the test's
        // stderr, which both nextest and libtest capture and show only when
        // the test fails (by panic or by returning an error), where they are
        // usually the reason why.
        if !self.output.is_empty() {
            eprintln!(
                "----- last output of {} -----\n{}\n----- end of {} -----",
                self.name,
                self.output.tail(TAIL_LINES),
                self.name
            );
        }
        // Kill and reap now rather than leave it to `kill_on_drop`: a test
        // that panics tears its runtime down before tokio reaps the child,
        // and in a container whose PID 1 does not reap, the child would stay
        // a zombie. SIGKILL takes effect in milliseconds.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.start_kill();
            let deadline = std::time::Instant::now() + REAP_TIMEOUT;
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Copies `stream` line by line into `output` until EOF.
fn collect(stream: impl AsyncRead + Unpin + Send + 'static, output: Output) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        // Not `lines()`: a line that is not UTF-8 must not end the copying.
        while let Ok(read) = reader.read_until(b'\n', &mut line).await {
            if read == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            output.push(text.trim_end_matches(['\n', '\r']).to_owned());
            line.clear();
        }
    });
}
