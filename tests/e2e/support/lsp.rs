//! A small async LSP client over a child process's stdio: Content-Length
//! framing, request ids, responses routed to their callers, server→client
//! requests answered, notifications recorded.
//!
//! Every outgoing message goes through one unbounded channel to one writer
//! task, so messages leave in exactly the order they were queued. The
//! simulated editor relies on that: it queues a `didChange` and then the
//! `applyEdit` answer, and the proxy must see them in that order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, Notify};

/// How long a request to the proxy may take before the test gives up on it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The sending half shared by the client and whoever answers server requests.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Value>,
}

impl Outbox {
    /// An outbox whose messages land in the returned receiver: what the
    /// editor's own unit tests inspect.
    #[cfg(test)]
    pub fn channel() -> (Outbox, mpsc::UnboundedReceiver<Value>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Outbox { tx }, rx)
    }

    /// Queues a message; silently dropped once the proxy has gone, which the
    /// tests notice through timeouts and the proxy log instead.
    pub fn send(&self, message: Value) {
        let _ = self.tx.send(message);
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    pub fn respond(&self, id: &Value, result: Value) {
        self.send(json!({ "jsonrpc": "2.0", "id": id, "result": result }));
    }
}

/// Answers server→client requests the test cares about.
pub trait RequestHandler: Send + Sync + 'static {
    /// Returns true when it has taken charge of answering (now or later);
    /// false lets the client answer `null`, as editors do for
    /// `window/workDoneProgress/create` and `client/registerCapability`.
    fn handle(&self, outbox: &Outbox, id: &Value, method: &str, params: &Value) -> bool;
}

/// A notification or request the proxy sent us.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub params: Value,
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>;

pub struct LspClient {
    outbox: Outbox,
    pending: Pending,
    /// Server→client notifications, in arrival order.
    notifications: Arc<Mutex<Vec<Received>>>,
    /// Woken whenever anything arrives, for tests that wait on notifications.
    arrived: Arc<Notify>,
    /// Why reading the proxy's stdout stopped, if it did: stdout must carry
    /// nothing but framed LSP messages.
    stream_error: Arc<Mutex<Option<String>>>,
    next_id: AtomicI64,
    /// Kept so the process lives exactly as long as the client (`kill_on_drop`).
    child: Mutex<Option<Child>>,
    pub log_path: PathBuf,
}

impl LspClient {
    /// Starts `program args…` with stdin/stdout as the LSP channel and stderr
    /// appended to `log_path`.
    pub fn spawn(
        program: &Path,
        args: &[String],
        log_path: PathBuf,
        handler: Arc<dyn RequestHandler>,
    ) -> LspClient {
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|err| panic!("create {}: {err}", log_path.display()));
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", program.display()));
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");

        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Outbox { tx };
        let pending: Pending = Arc::default();
        let notifications: Arc<Mutex<Vec<Received>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let stream_error: Arc<Mutex<Option<String>>> = Arc::default();

        tokio::spawn(write_loop(stdin, rx));
        tokio::spawn(read_loop(
            stdout,
            ReadContext {
                outbox: outbox.clone(),
                pending: pending.clone(),
                notifications: notifications.clone(),
                arrived: arrived.clone(),
                handler,
                stream_error: stream_error.clone(),
            },
        ));

        LspClient {
            outbox,
            pending,
            notifications,
            arrived,
            stream_error,
            next_id: AtomicI64::new(1),
            child: Mutex::new(Some(child)),
            log_path,
        }
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.outbox.notify(method, params);
    }

    /// Sends a request and waits for its response: `Ok(result)` or
    /// `Err(description)` for an error response, a timeout or a dead proxy.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.outbox.send(json!({
            "jsonrpc": "2.0", "id": id, "method": method, "params": params,
        }));
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Err(format!("{method}: the proxy closed its stdout")),
            Err(_) => {
                self.pending.lock().unwrap().remove(&id);
                return Err(format!("{method}: no response within {REQUEST_TIMEOUT:?}"));
            }
        };
        match response.get("error") {
            Some(error) => Err(format!("{method} failed: {error}")),
            None => Ok(response.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Notifications received so far with this method.
    pub fn notifications(&self, method: &str) -> Vec<Value> {
        self.notifications
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.method == method)
            .map(|n| n.params.clone())
            .collect()
    }

    /// Waits until some notification with `method` satisfies `accept`.
    pub async fn wait_notification(
        &self,
        method: &str,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before looking, so an arrival in between
            // still wakes us.
            let notified = self.arrived.notified();
            if let Some(found) = self.notifications(method).into_iter().find(|p| accept(p)) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Why the proxy's stdout stopped making sense, if it did.
    pub fn stream_error(&self) -> Option<String> {
        self.stream_error.lock().unwrap().clone()
    }

    /// Waits for the proxy to exit on its own; `None` if it is still
    /// running after `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap().take()?;
        let status = tokio::time::timeout(timeout, child.wait()).await;
        match status {
            Ok(Ok(status)) => Some(status),
            _ => {
                // Put it back so that it is still killed on drop.
                *self.child.lock().unwrap() = Some(child);
                None
            }
        }
    }

    /// Kills the proxy process now (a crash, as far as the hub can tell).
    pub async fn kill(&self) {
        let child = self.child.lock().unwrap().take();
        if let Some(mut child) = child {
            let _ = child.kill().await;
        }
    }

    /// The last `lines` lines of the proxy's stderr, for failure reports.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn write_loop(mut stdin: ChildStdin, mut rx: mpsc::UnboundedReceiver<Value>) {
    while let Some(message) = rx.recv().await {
        let body = message.to_string();
        let frame = format!("Content-Length: {}\r\n\r\n{body}", body.len());
        if stdin.write_all(frame.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            // The proxy is gone; its log says why.
            return;
        }
    }
}

struct ReadContext {
    outbox: Outbox,
    pending: Pending,
    notifications: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    handler: Arc<dyn RequestHandler>,
    stream_error: Arc<Mutex<Option<String>>>,
}

async fn read_loop(stdout: ChildStdout, ctx: ReadContext) {
    let mut reader = BufReader::new(stdout);
    loop {
        let message = match read_message(&mut reader).await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(err) => {
                // Not a failure by itself (a proxy killed mid-write ends
                // like this); failure reports show it.
                *ctx.stream_error.lock().unwrap() = Some(err);
                break;
            }
        };
        dispatch(&ctx, message);
        ctx.arrived.notify_waiters();
    }
    // Fail every waiting request at once rather than letting each time out.
    ctx.pending.lock().unwrap().clear();
    ctx.arrived.notify_waiters();
}

fn dispatch(ctx: &ReadContext, message: Value) {
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let id = message.get("id").cloned();
    match (method, id) {
        (Some(method), Some(id)) => {
            let params = message.get("params").cloned().unwrap_or(Value::Null);
            if !ctx.handler.handle(&ctx.outbox, &id, &method, &params) {
                ctx.outbox.respond(&id, Value::Null);
            }
            // Requests are recorded beside notifications so that tests can
            // wait for them (e.g. `window/showDocument`) the same way.
            ctx.notifications
                .lock()
                .unwrap()
                .push(Received { method, params });
        }
        (Some(method), None) => {
            let params = message.get("params").cloned().unwrap_or(Value::Null);
            ctx.notifications
                .lock()
                .unwrap()
                .push(Received { method, params });
        }
        (None, Some(id)) => {
            let waiter = id
                .as_i64()
                .and_then(|id| ctx.pending.lock().unwrap().remove(&id));
            if let Some(waiter) = waiter {
                let _ = waiter.send(message);
            }
        }
        (None, None) => {
            *ctx.stream_error.lock().unwrap() =
                Some(format!("message with neither method nor id: {message}"));
        }
    }
}

/// Reads one framed message; `Ok(None)` at a clean end of stream.
async fn read_message(reader: &mut BufReader<ChildStdout>) -> Result<Option<Value>, String> {
    let mut content_length = None;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|err| format!("read header: {err}"))?;
        if n == 0 {
            return if content_length.is_none() {
                Ok(None)
            } else {
                Err("end of stream inside a header".into())
            };
        }
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {header:?}"))?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            let length = value
                .trim()
                .parse::<usize>()
                .map_err(|err| format!("bad Content-Length {value:?}: {err}"))?;
            content_length = Some(length);
        }
    }
    let length = content_length.ok_or("message without Content-Length")?;
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|err| format!("read body: {err}"))?;
    serde_json::from_slice(&body).map(Some).map_err(|err| {
        format!(
            "body is not JSON ({err}): {}",
            String::from_utf8_lossy(&body)
        )
    })
}
