//! Publishing a folder to a session: what `chorus share [DIR]` and the
//! `chorus.share` command do. Lists the folder ([`crate::workspace`]),
//! then streams one `put` per file over a connection of its own, with a
//! bounded window of puts awaiting their `stored`, and sums up what the hub
//! kept.
//!
//! ```text
//!   list (blocking thread) ──► read one file at a time (blocking thread)
//!                                   │ bounded channel
//!                                   ▼
//!   put{path, content} ──► hub ──► stored{path, created, notSynced?}
//!   (at most WINDOW puts, PUT_BYTES_IN_FLIGHT bytes unanswered)
//! ```
//!
//! Why a connection of its own, even inside `chorus lsp`: a share is
//! megabytes of frames, and keystrokes queued behind them on the editing
//! link would wait for all of them (the hub reads a connection in order).
//!
//! Invariant: the hub answers frames in order, so each `put` gets exactly
//! one answer, `stored` or `error`, in the order they were sent; answers
//! are matched to the oldest unanswered put (by path when the answer
//! names one).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use chorus_protocol::wire::{
    ClientMsg, ErrorCode, NotSynced, PutContent, Role, ServerMsg, WorkspaceLimits, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tower_lsp_server::ls_types::{
    MessageType, NumberOrString, WorkDoneProgress, WorkDoneProgressBegin, WorkDoneProgressEnd,
    WorkDoneProgressReport,
};
use tracing::{debug, info, warn};

use crate::notifier::Notifier;
use crate::workspace::{self, LocalFile, SkippedFile, WalkError};

/// Puts sent and not yet answered, at most: enough to keep the link busy
/// across a round trip, few enough that the hub's queue for this
/// connection never fills.
const WINDOW: usize = 32;
/// Text bytes sent and not yet answered, at most.
const PUT_BYTES_IN_FLIGHT: u64 = 4 << 20;

/// Where to publish, and as whom.
#[derive(Clone)]
pub struct ShareTarget {
    /// `ws://` or `wss://` URL of the hub.
    pub hub: String,
    pub session: String,
    /// The name others see while the share is connected.
    pub name: String,
    pub token: Option<String>,
    /// For `wss://`; see [`crate::hub_link::tls_config`].
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Shown to others as this participant's editor.
    pub editor: String,
}

/// How a share is getting on, for a progress display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Welcomed by the hub, with its caps.
    Connected { limits: WorkspaceLimits },
    /// The folder is listed: this many files, this many bytes, to send.
    Listed { files: usize, bytes: u64 },
    /// One more file answered (or skipped): `done` of `total`.
    Answered {
        done: usize,
        total: usize,
        bytes_done: u64,
    },
}

/// What a share did: every listed file ends in exactly one of its lists,
/// or in `not_sent`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Text files the session now has as documents (its text wins for a
    /// document it had already).
    pub synced: Vec<String>,
    /// How many of `synced` were new to the session.
    pub created: usize,
    /// Files the session lists without their content, and why.
    pub not_synced: Vec<(String, NotSynced)>,
    /// Files the hub refused, with its message.
    pub refused: Vec<(String, String)>,
    /// Files that could not be listed or read, with the reason.
    pub skipped: Vec<SkippedFile>,
    /// Files not sent because the hub said the session is full of files.
    pub not_sent: usize,
}

impl Summary {
    /// Whether every file is in the session, synced or listed.
    pub fn is_complete(&self) -> bool {
        self.refused.is_empty() && self.not_sent == 0
    }

    fn count(&self, reason: NotSynced) -> usize {
        self.not_synced.iter().filter(|(_, r)| *r == reason).count()
    }

    /// One sentence for a notification.
    pub fn headline(&self, session: &str) -> String {
        let mut text = format!(
            "shared {} with session {session} ({} new)",
            plural(self.synced.len(), "file"),
            self.created
        );
        let listed = self.not_synced.len();
        if listed > 0 {
            text.push_str(&format!(
                "; {} listed but not synced (binary, too large or over the session's size)",
                plural(listed, "more file")
            ));
        }
        if !self.refused.is_empty() || self.not_sent > 0 {
            text.push_str(&format!(
                "; {} not shared (the hub refused them or the session holds as many files as it may)",
                plural(self.refused.len() + self.not_sent, "file")
            ));
        }
        if !self.skipped.is_empty() {
            text.push_str(&format!(
                "; {} skipped (unreadable, symbolic links or unusable names)",
                plural(self.skipped.len(), "file")
            ));
        }
        text
    }

    /// The headline and, below it, every file that did not become a
    /// document, by reason: what `chorus share` prints.
    pub fn report(&self, session: &str) -> String {
        let mut out = self.headline(session);
        out.push('\n');
        for (reason, title) in [
            (NotSynced::Binary, "listed, not synced: binary"),
            (NotSynced::TooLarge, "listed, not synced: too large"),
            (
                NotSynced::SessionFull,
                "listed, not synced: the session's size cap was reached",
            ),
        ] {
            let items = self
                .not_synced
                .iter()
                .filter(|(_, r)| *r == reason)
                .map(|(path, _)| path.clone())
                .collect();
            section(&mut out, format!("{title} ({})", self.count(reason)), items);
        }
        section(
            &mut out,
            format!("refused by the hub ({})", self.refused.len()),
            self.refused
                .iter()
                .map(|(path, why)| format!("{path}: {why}"))
                .collect(),
        );
        if self.not_sent > 0 {
            out.push_str(&format!(
                "  not sent: {} (the session holds as many files as the hub allows)\n",
                plural(self.not_sent, "file")
            ));
        }
        section(
            &mut out,
            format!("skipped ({})", self.skipped.len()),
            self.skipped
                .iter()
                .map(|s| {
                    if s.path.is_empty() {
                        s.reason.clone()
                    } else {
                        format!("{}: {}", s.path, s.reason)
                    }
                })
                .collect(),
        );
        out
    }
}

/// A titled list of at most 20 items, unless it is empty.
fn section(out: &mut String, title: String, items: Vec<String>) {
    if items.is_empty() {
        return;
    }
    out.push_str(&format!("  {title}:\n"));
    for item in items.iter().take(20) {
        out.push_str(&format!("    {item}\n"));
    }
    if items.len() > 20 {
        out.push_str(&format!("    … and {} more\n", items.len() - 20));
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("cannot reach the Chorus hub at {hub}: {reason}")]
    Connect { hub: String, reason: String },
    #[error("the hub refused to let us in: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("this hub cannot hold a workspace (it is older than this chorus); upgrade the hub")]
    NoWorkspace,
    #[error("a read-only token cannot share files; use the session's join token")]
    ReadOnly,
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The connection ended before every file was answered. What was
    /// stored stays in the session; sharing again completes it.
    #[error("{reason}; {done} of {total} files were answered (share again to finish: files already shared are kept)")]
    Lost {
        reason: String,
        done: usize,
        total: usize,
    },
}

type Socket = tokio_tungstenite::WebSocketStream<Box<dyn crate::hub_link::Io>>;

/// Publishes `root` to the session. `progress` is called as the share goes
/// (from the calling task; keep it quick).
pub async fn share(
    root: &Path,
    target: &ShareTarget,
    mut progress: impl FnMut(Progress),
) -> Result<Summary, ShareError> {
    let (mut ws, limits) = join(target).await?;
    progress(Progress::Connected { limits });
    let root_owned = root.to_owned();
    let listing = tokio::task::spawn_blocking(move || workspace::list(&root_owned))
        .await
        .map_err(|err| ShareError::Lost {
            reason: format!("the walk stopped: {err}"),
            done: 0,
            total: 0,
        })??;
    info!(root = %root.display(), files = listing.files.len(), bytes = listing.total_bytes(), "sharing");
    progress(Progress::Listed {
        files: listing.files.len(),
        bytes: listing.total_bytes(),
    });
    let mut summary = Summary {
        skipped: listing.skipped,
        ..Summary::default()
    };
    let result = stream_puts(&mut ws, listing.files, limits, &mut summary, &mut progress).await;
    let _ = ws.close(None).await;
    result.map(|()| summary)
}

/// Connects and says hello; the hub's caps once it welcomed us.
async fn join(target: &ShareTarget) -> Result<(Socket, WorkspaceLimits), ShareError> {
    if let Some(warning) = crate::hub_link::token_in_clear(&target.hub, target.token.as_deref()) {
        tracing::warn!("{warning}");
    }
    let url = crate::hub_link::session_url(&target.hub, &target.session);
    let mut ws = crate::hub_link::connect(&url, target.tls.as_ref())
        .await
        .map_err(|reason| ShareError::Connect {
            hub: target.hub.clone(),
            reason,
        })?;
    let hello = ClientMsg::Hello {
        protocol: PROTOCOL_VERSION,
        session: target.session.clone(),
        name: target.name.clone(),
        editor: Some(target.editor.clone()),
        instance: None,
        token: target.token.clone().filter(|t| !t.is_empty()),
    };
    send(&mut ws, &hello)
        .await
        .map_err(|reason| ShareError::Connect {
            hub: target.hub.clone(),
            reason,
        })?;
    loop {
        match receive(&mut ws).await {
            Ok(ServerMsg::Welcome {
                role, workspace, ..
            }) => {
                if role == Role::ReadOnly {
                    return Err(ShareError::ReadOnly);
                }
                return workspace
                    .map(|limits| (ws, limits))
                    .ok_or(ShareError::NoWorkspace);
            }
            Ok(ServerMsg::Error { code, message, .. }) => {
                return Err(ShareError::Refused { code, message })
            }
            Ok(_) => {}
            Err(reason) => {
                return Err(ShareError::Connect {
                    hub: target.hub.clone(),
                    reason,
                })
            }
        }
    }
}

/// One unanswered put.
struct InFlight {
    path: String,
    bytes: u64,
}

async fn stream_puts(
    ws: &mut Socket,
    files: Vec<LocalFile>,
    limits: WorkspaceLimits,
    summary: &mut Summary,
    progress: &mut impl FnMut(Progress),
) -> Result<(), ShareError> {
    let total = files.len();
    // Files are read on a blocking thread, a window ahead of the puts.
    let (contents, mut next_file) = mpsc::channel(WINDOW);
    let reader = tokio::task::spawn_blocking(move || {
        for file in files {
            let content = workspace::read_for_put(&file, limits.max_file_bytes);
            if contents.blocking_send((file, content)).is_err() {
                return;
            }
        }
    });
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut bytes_in_flight = 0u64;
    let mut reading = true;
    // Files taken from the reader: sent, or skipped as unreadable.
    let mut taken = 0usize;
    let mut done = 0usize;
    let mut bytes_done = 0u64;
    let lost = |reason: String, done: usize| ShareError::Lost {
        reason,
        done,
        total,
    };
    while reading || !in_flight.is_empty() {
        let room = in_flight.len() < WINDOW && bytes_in_flight < PUT_BYTES_IN_FLIGHT;
        tokio::select! {
            next = next_file.recv(), if reading && room => match next {
                None => reading = false,
                Some((file, Err(err))) => {
                    taken += 1;
                    summary.skipped.push(SkippedFile { path: file.path, reason: err.to_string() });
                    done += 1;
                    progress(Progress::Answered { done, total, bytes_done });
                }
                Some((file, Ok(content))) => {
                    taken += 1;
                    let bytes = match &content {
                        PutContent::Text { text } => text.len() as u64,
                        PutContent::Binary { .. } | PutContent::TooLarge { .. } => 0,
                    };
                    let put = ClientMsg::Put { path: file.path.clone(), content };
                    send(ws, &put).await.map_err(|reason| lost(reason, done))?;
                    bytes_in_flight += bytes;
                    in_flight.push_back(InFlight { path: file.path, bytes });
                }
            },
            frame = receive(ws) => {
                let msg = frame.map_err(|reason| lost(reason, done))?;
                let answered = match msg {
                    ServerMsg::Stored { path, created, not_synced } => {
                        let Some(put) = take_answered(&mut in_flight, Some(&path)) else {
                            warn!(%path, "stored for a file not sent");
                            continue;
                        };
                        match not_synced {
                            None => {
                                summary.synced.push(path);
                                summary.created += usize::from(created);
                            }
                            Some(reason) => summary.not_synced.push((path, reason)),
                        }
                        put
                    }
                    ServerMsg::Error { code, message, doc } => {
                        if code.is_fatal_for_join() || code == ErrorCode::Unavailable {
                            return Err(lost(format!("the hub stopped the share: {message}"), done));
                        }
                        let Some(put) = take_answered(&mut in_flight, doc.as_deref()) else {
                            warn!(?code, %message, "hub error outside the share");
                            continue;
                        };
                        if code == ErrorCode::TooManyFiles && reading {
                            // Every later put would be refused the same way.
                            reading = false;
                            next_file.close();
                            summary.not_sent = total - taken;
                        }
                        summary.refused.push((put.path.clone(), message));
                        put
                    }
                    other => {
                        debug!(?other, "ignored while sharing");
                        continue;
                    }
                };
                bytes_in_flight -= answered.bytes;
                bytes_done += answered.bytes;
                done += 1;
                progress(Progress::Answered { done, total, bytes_done });
            }
        }
    }
    let _ = reader.await;
    Ok(())
}

/// Removes and returns the put an answer is for: the one at `path` if it
/// names one we sent, else the oldest.
fn take_answered(in_flight: &mut VecDeque<InFlight>, path: Option<&str>) -> Option<InFlight> {
    let index = path
        .and_then(|path| in_flight.iter().position(|put| put.path == path))
        .unwrap_or(0);
    in_flight.remove(index)
}

async fn send(ws: &mut Socket, msg: &ClientMsg) -> Result<(), String> {
    let text = serde_json::to_string(msg).map_err(|err| err.to_string())?;
    ws.send(Message::text(text))
        .await
        .map_err(|err| format!("connection to the hub lost: {err}"))
}

/// The next frame from the hub that reads as a message.
async fn receive(ws: &mut Socket) -> Result<ServerMsg, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMsg>(&text) {
                Ok(msg) => return Ok(msg),
                Err(err) => warn!(cause = %err, "unreadable frame from hub"),
            },
            Some(Ok(Message::Close(_))) | None => {
                return Err("the hub closed the connection".into())
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(format!("connection to the hub lost: {err}")),
        }
    }
}

/// How an editor's `chorus.share` reaches the hub and the user; set at
/// `initialize`.
pub(crate) struct EditorShare {
    pub target: ShareTarget,
    /// The workspace folder.
    pub root: PathBuf,
    /// Whether the editor shows `$/progress`.
    pub work_done_progress: bool,
    pub notifier: Notifier,
    /// Set while a share runs: one at a time.
    pub running: Arc<AtomicBool>,
    /// The loop, told when the folder is shared: from then on its files
    /// are kept in step both ways (`disk.rs`).
    pub events: mpsc::UnboundedSender<crate::core::Event>,
}

impl EditorShare {
    /// Starts publishing the workspace in the background; `Err` (for the
    /// user) when one is already under way.
    pub(crate) fn start(&self) -> Result<(), String> {
        if self.running.swap(true, Ordering::SeqCst) {
            return Err("Chorus: a share is already under way".into());
        }
        static SHARES: AtomicU64 = AtomicU64::new(0);
        let token = NumberOrString::String(format!(
            "chorus-share-{}",
            SHARES.fetch_add(1, Ordering::Relaxed)
        ));
        let progress = self.work_done_progress.then_some(token);
        let notifier = self.notifier.clone();
        let target = self.target.clone();
        let root = self.root.clone();
        let running = self.running.clone();
        let events = self.events.clone();
        if let Some(token) = &progress {
            notifier.create_progress(token.clone());
            notifier.progress(
                token.clone(),
                WorkDoneProgress::Begin(WorkDoneProgressBegin {
                    title: format!("Chorus: sharing {}", root.display()),
                    cancellable: Some(false),
                    message: Some("listing files".into()),
                    percentage: Some(0),
                }),
            );
        }
        tokio::spawn(async move {
            let mut last_report = std::time::Instant::now();
            let result = share(&root, &target, |event| {
                let Some(token) = &progress else {
                    return;
                };
                let (message, percentage) = match event {
                    Progress::Connected { .. } => return,
                    Progress::Listed { files, bytes } => (
                        format!("{} ({})", plural(files, "file"), human_bytes(bytes)),
                        0,
                    ),
                    Progress::Answered { done, total, .. } => {
                        // Four reports a second at most: each is a message
                        // the editor redraws for.
                        if done < total && last_report.elapsed().as_millis() < 250 {
                            return;
                        }
                        last_report = std::time::Instant::now();
                        (
                            format!("{done}/{total} files"),
                            (done * 100 / total.max(1)) as u32,
                        )
                    }
                };
                notifier.progress(
                    token.clone(),
                    WorkDoneProgress::Report(WorkDoneProgressReport {
                        cancellable: Some(false),
                        message: Some(message),
                        percentage: Some(percentage),
                    }),
                );
            })
            .await;
            let (typ, message) = match &result {
                Ok(summary) => {
                    let _ = events.send(crate::core::Event::Shared);
                    notifier.log(
                        MessageType::INFO,
                        format!("Chorus: {}", summary.report(&target.session)),
                    );
                    let typ = if summary.is_complete() {
                        MessageType::INFO
                    } else {
                        MessageType::WARNING
                    };
                    (
                        typ,
                        format!(
                            "Chorus: {} from {}.",
                            summary.headline(&target.session),
                            root.display()
                        ),
                    )
                }
                Err(err) => (
                    MessageType::ERROR,
                    format!("Chorus: sharing {} failed: {err}", root.display()),
                ),
            };
            if let Some(token) = progress {
                notifier.progress(
                    token,
                    WorkDoneProgress::End(WorkDoneProgressEnd {
                        message: Some(message.clone()),
                    }),
                );
            }
            notifier.tell_user(typ, message);
            running.store(false, Ordering::SeqCst);
        });
        Ok(())
    }
}

/// `chorus share`: publishes `root`, with progress and the summary on
/// stderr (stdout stays empty for scripts). An error unless every file is
/// in the session, synced or listed.
pub async fn run_in_terminal(root: &Path, target: &ShareTarget) -> anyhow::Result<()> {
    use std::io::Write;
    let started = std::time::Instant::now();
    let mut last_line = started;
    let mut stderr = std::io::stderr();
    let summary = share(root, target, |event| match event {
        Progress::Connected { limits } => {
            let _ = writeln!(
                stderr,
                "chorus share: joined session {} at {} (files up to {}, {} in all, {} files at most)",
                target.session,
                target.hub,
                human_bytes(limits.max_file_bytes),
                human_bytes(limits.max_session_bytes),
                limits.max_files
            );
        }
        Progress::Listed { files, bytes } => {
            let _ = writeln!(
                stderr,
                "chorus share: sharing {} ({}) from {}",
                plural(files, "file"),
                human_bytes(bytes),
                root.display()
            );
        }
        Progress::Answered {
            done,
            total,
            bytes_done,
        } => {
            // A line a second at most: a big tree must not flood the terminal.
            if done == total || last_line.elapsed().as_millis() >= 1000 {
                last_line = std::time::Instant::now();
                let _ = writeln!(
                    stderr,
                    "chorus share: {done}/{total} files ({})",
                    human_bytes(bytes_done)
                );
            }
        }
    })
    .await?;
    eprint!(
        "chorus share: {} in {:.1} s\n{}",
        summary.headline(&target.session),
        started.elapsed().as_secs_f64(),
        summary
            .report(&target.session)
            .split_once('\n')
            .map_or("", |(_, rest)| rest)
    );
    if !summary.is_complete() {
        anyhow::bail!(
            "not every file is in session {}: {} refused, {} not sent",
            target.session,
            summary.refused.len(),
            summary.not_sent
        );
    }
    Ok(())
}

/// `1.2 MB`-style sizes for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;

    /// What the fake hub saw.
    #[derive(Debug, Default)]
    struct Seen {
        puts: Vec<(String, PutContent)>,
        /// The most puts it held unanswered at once.
        most_unanswered: usize,
    }

    /// A hub that welcomes one client with `limits`, holds its answers
    /// until `WINDOW` puts wait or the client pauses, and refuses puts past
    /// `limits.max_files` with `too_many_files`.
    async fn fake_hub(limits: WorkspaceLimits) -> (String, tokio::task::JoinHandle<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut seen = Seen::default();
            let reply = |msg: ServerMsg| Message::text(serde_json::to_string(&msg).unwrap());
            let first = ws.next().await.unwrap().unwrap();
            let hello: ClientMsg = serde_json::from_str(first.to_text().unwrap()).unwrap();
            assert!(matches!(hello, ClientMsg::Hello { .. }), "{hello:?}");
            ws.send(reply(ServerMsg::Welcome {
                protocol: PROTOCOL_VERSION,
                session: "s".into(),
                client_id: 1,
                participants: Vec::new(),
                role: Role::Editor,
                workspace: Some(limits),
                max_message_bytes: None,
            }))
            .await
            .unwrap();
            let mut waiting: Vec<(String, PutContent)> = Vec::new();
            loop {
                let next = tokio::time::timeout(Duration::from_millis(100), ws.next()).await;
                let flush = match next {
                    Ok(Some(Ok(Message::Text(text)))) => {
                        match serde_json::from_str::<ClientMsg>(&text).unwrap() {
                            ClientMsg::Put { path, content } => waiting.push((path, content)),
                            other => panic!("unexpected {other:?}"),
                        }
                        seen.most_unanswered = seen.most_unanswered.max(waiting.len());
                        waiting.len() >= WINDOW
                    }
                    Ok(Some(Ok(Message::Close(_)))) | Ok(None) => return seen,
                    Ok(_) => false,
                    Err(_) => true,
                };
                if !flush {
                    continue;
                }
                for (path, content) in waiting.drain(..) {
                    let answer = if seen.puts.len() as u64 >= limits.max_files {
                        ServerMsg::Error {
                            code: ErrorCode::TooManyFiles,
                            message: "the session holds 40 files already".into(),
                            doc: None,
                        }
                    } else {
                        let not_synced = match &content {
                            PutContent::Text { .. } => None,
                            PutContent::Binary { .. } => Some(NotSynced::Binary),
                            PutContent::TooLarge { .. } => Some(NotSynced::TooLarge),
                        };
                        ServerMsg::Stored {
                            path: path.clone(),
                            created: true,
                            not_synced,
                        }
                    };
                    seen.puts.push((path, content));
                    ws.send(reply(answer)).await.unwrap();
                }
            }
        });
        (url, task)
    }

    fn target(hub: String) -> ShareTarget {
        ShareTarget {
            hub,
            session: "s".into(),
            name: "ada".into(),
            token: None,
            tls: None,
            editor: "chorus share".into(),
        }
    }

    fn limits(max_files: u64) -> WorkspaceLimits {
        WorkspaceLimits {
            max_file_bytes: 1000,
            max_session_bytes: 1 << 20,
            max_files,
        }
    }

    #[tokio::test]
    async fn a_share_streams_every_file_within_the_window_and_sums_up() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..100 {
            std::fs::write(dir.path().join(format!("f{i:03}.txt")), format!("{i}\n")).unwrap();
        }
        std::fs::write(dir.path().join("logo.png"), b"\x89PNG\0\0").unwrap();
        std::fs::write(dir.path().join("data.csv"), vec![b'1'; 2000]).unwrap();
        std::fs::write(dir.path().join(".gitignore"), b"*.tmp\n").unwrap();
        std::fs::write(dir.path().join("x.tmp"), b"ignored\n").unwrap();
        let (url, hub) = fake_hub(limits(1000)).await;
        let mut events = Vec::new();
        let summary = share(dir.path(), &target(url), |p| events.push(p))
            .await
            .unwrap();
        let seen = hub.await.unwrap();
        assert_eq!(seen.puts.len(), 103);
        assert_eq!(seen.most_unanswered, WINDOW);
        assert!(seen.puts.iter().all(|(path, _)| path != "x.tmp"));
        assert_eq!(summary.synced.len(), 101);
        assert_eq!(summary.created, 101);
        assert_eq!(
            summary.not_synced,
            [
                ("data.csv".to_owned(), NotSynced::TooLarge),
                ("logo.png".to_owned(), NotSynced::Binary)
            ]
        );
        assert!(summary.is_complete());
        assert_eq!(
            events[0],
            Progress::Connected {
                limits: limits(1000)
            }
        );
        assert!(matches!(events[1], Progress::Listed { files: 103, .. }));
        assert!(matches!(
            events.last(),
            Some(Progress::Answered {
                done: 103,
                total: 103,
                ..
            })
        ));
        let report = summary.report("s");
        assert!(
            report.starts_with("shared 101 files with session s (101 new); 2 more files listed"),
            "{report}"
        );
        assert!(
            report.contains("listed, not synced: binary (1):\n    logo.png\n"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn a_full_session_stops_the_share_and_says_what_was_left() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..100 {
            std::fs::write(dir.path().join(format!("f{i:03}.txt")), "x\n").unwrap();
        }
        let (url, hub) = fake_hub(limits(40)).await;
        let summary = share(dir.path(), &target(url), |_| {}).await.unwrap();
        let seen = hub.await.unwrap();
        assert_eq!(summary.synced.len(), 40);
        assert!(!summary.is_complete());
        // Everything sent before the first refusal arrived is refused too;
        // nothing after it is sent.
        assert_eq!(summary.refused.len() + summary.not_sent, 60);
        assert_eq!(seen.puts.len(), 40 + summary.refused.len());
        assert!(summary.not_sent > 0);
        assert!(summary.report("s").contains("not sent"));
    }

    #[tokio::test]
    async fn an_unreachable_hub_is_an_error_that_names_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        drop(listener);
        let dir = tempfile::tempdir().unwrap();
        let err = share(dir.path(), &target(url.clone()), |_| {})
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot reach the Chorus hub at {url}")),
            "{err}"
        );
    }
}
