//! The session's shared terminal: one shell in a locked-down container
//! (the sandbox's `open_terminal`), its output relayed to every
//! participant, its keystrokes from those with edit rights.
//!
//! Invariants: at most one terminal per session; output `seq` numbers
//! count up from 0 within a terminal, and a replay sent to one participant
//! carries the next live `seq`, so a view shows the replay and then live
//! output from that `seq` on; the actor never awaits the terminal
//! (keystrokes, resizes and file updates go through tasks of their own, in
//! order, over bounded channels: a full one refuses, never waits); the
//! terminal has the size of the view of whoever typed last (or opened it);
//! output reaches the session at most [`OUTPUT_BYTES_PER_SEC`] (the rest
//! waits in the sandbox's bounded queue, then is dropped with a notice);
//! the container gets the session's documents as they change, at most
//! [`FILES_DEBOUNCE`] late; the terminal ends when stopped, when the
//! sandbox ends it (shell exit, idle, lifetime), when nobody has been in
//! the session for `HubConfig::terminal_orphan_grace`, and with the
//! session actor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chorus_protocol::wire::{ErrorCode, ServerMsg};
use chorus_sandbox::{Terminal, TerminalEnd, TerminalEvent, TerminalHandle, TerminalSize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Session, SessionCmd};
use crate::Runner;

/// Terminal output relayed to the session per second, at most: a program
/// printing without pause (`yes`) would otherwise fill every participant's
/// outbound queue and get them dropped. Far above what anyone reads.
pub(super) const OUTPUT_BYTES_PER_SEC: f64 = 1024.0 * 1024.0;
/// How much output may go at once before the rate applies.
const OUTPUT_BURST_BYTES: f64 = 1024.0 * 1024.0;
/// Edits reach the container's `/work` this long after the first of a
/// batch: soon enough for the next command typed, few enough unpacks.
pub(super) const FILES_DEBOUNCE: Duration = Duration::from_millis(250);
/// Keystroke messages waiting for the PTY before a sender is told to slow
/// down: a program that stops reading its input must not grow the hub.
const KEYS_QUEUE: usize = 256;
/// Keystrokes typed while the terminal starts, kept for when it has.
const MAX_EARLY_INPUT: usize = 64 * 1024;
/// The largest view accepted (xterm's own cap is far larger; a PTY of a
/// million cells is a memory request, not a screen).
const MAX_CELLS: u16 = 1000;

static NEXT_TERMINAL_ID: AtomicU64 = AtomicU64::new(1);

/// The terminal as the session sees it.
pub(super) struct SharedTerminal {
    terminal_id: u64,
    opener: u64,
    opener_name: String,
    state: State,
    /// Each participant's view, from `terminal` and `terminalResize`.
    views: HashMap<u64, TerminalSize>,
    typist: Option<u64>,
    size: TerminalSize,
    next_seq: u64,
    /// Why the terminal is being closed, for the `terminalEnded` that
    /// follows (the sandbox only knows it was closed).
    closing: Option<String>,
    /// The revision of each document the container has.
    synced: HashMap<String, u64>,
    /// When to send the documents changed since the last update.
    files_due: Option<Instant>,
}

enum State {
    Opening {
        /// Fired (or dropped) to give up the start: the container goes.
        cancel: Option<oneshot::Sender<()>>,
        early_input: Vec<u8>,
    },
    Open {
        keys: mpsc::Sender<KeyCmd>,
        files: mpsc::Sender<Vec<(String, String)>>,
        handle: TerminalHandle,
        _counted: crate::metrics::Held,
    },
}

enum KeyCmd {
    Write(Vec<u8>),
    Resize(TerminalSize),
}

/// A started terminal on its way to the session actor.
pub struct Opened(pub Result<Terminal, String>);

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(terminal) => write!(f, "Opened({})", terminal.handle.container_name()),
            Err(why) => write!(f, "Opened(Err({why:?}))"),
        }
    }
}

fn view_size(cols: Option<u16>, rows: Option<u16>) -> Result<TerminalSize, String> {
    let size = match (cols, rows) {
        (None, None) => TerminalSize::default(),
        (Some(cols), Some(rows)) => TerminalSize { cols, rows },
        _ => return Err("terminal needs both cols and rows, or neither".into()),
    };
    if size.cols == 0 || size.rows == 0 || size.cols > MAX_CELLS || size.rows > MAX_CELLS {
        return Err(format!(
            "a terminal view must be 1 to {MAX_CELLS} columns and rows, not {}×{}",
            size.cols, size.rows
        ));
    }
    Ok(size)
}

impl Session {
    /// `terminal`: opens the session's terminal, or shows the open one to
    /// the sender.
    pub(super) fn open_terminal(&mut self, client_id: u64, cols: Option<u16>, rows: Option<u16>) {
        let size = match view_size(cols, rows) {
            Ok(size) => size,
            Err(message) => {
                return self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::BadMessage, message, None),
                )
            }
        };
        if let Some(terminal) = self.terminal.as_mut() {
            terminal.views.insert(client_id, size);
            if matches!(terminal.state, State::Open { .. }) {
                self.show_terminal_to(client_id);
            }
            // Still opening: its `terminalStarted` goes to everyone.
            return;
        }
        let executor = match &self.config.runner {
            Runner::Enabled(executor) => executor.clone(),
            Runner::Disabled(reason) => {
                let message = format!("this hub cannot open a terminal: {reason}");
                return self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::RunsDisabled, message, None),
                );
            }
        };
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let terminal_id = NEXT_TERMINAL_ID.fetch_add(1, Ordering::Relaxed);
        let (files, synced) = self.terminal_files(&HashMap::new());
        let (cancel, cancelled) = oneshot::channel::<()>();
        let opener_name = self.participants[&client_id].info.name.clone();
        info!(session = %self.id, client_id, terminal_id, "terminal opening");
        self.terminal = Some(SharedTerminal {
            terminal_id,
            opener: client_id,
            opener_name,
            state: State::Opening {
                cancel: Some(cancel),
                early_input: Vec::new(),
            },
            views: HashMap::from([(client_id, size)]),
            typist: None,
            size,
            next_seq: 0,
            closing: None,
            synced,
            files_due: None,
        });
        let session = self.id.clone();
        tokio::spawn(async move {
            let opening = executor.open_terminal(session, files, size);
            tokio::select! {
                opened = opening => {
                    let opened = Opened(opened.map_err(|err| err.to_string()));
                    // A session gone meanwhile drops the terminal, which ends it.
                    let _ = me.send(SessionCmd::TerminalOpened { terminal_id, opened }).await;
                }
                // Dropping the start removes its container.
                _ = cancelled => {}
            }
        });
    }

    /// The started terminal reached the session.
    pub(super) fn terminal_opened(&mut self, terminal_id: u64, opened: Opened) {
        let Some(shared) = self
            .terminal
            .as_mut()
            .filter(|t| t.terminal_id == terminal_id)
        else {
            if let Ok(terminal) = opened.0 {
                tokio::spawn(async move { terminal.handle.close().await });
            }
            return;
        };
        let terminal = match opened.0 {
            Ok(terminal) => terminal,
            Err(why) => {
                warn!(session = %self.id, terminal_id, cause = %why, "terminal did not start");
                let asked: Vec<u64> = shared.views.keys().copied().collect();
                self.terminal = None;
                let message = format!("the shared terminal could not start: {why}");
                for client_id in asked {
                    self.send(
                        client_id,
                        &ServerMsg::error(ErrorCode::RunRefused, message.clone(), None),
                    );
                }
                return;
            }
        };
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let Terminal { handle, output } = terminal;
        info!(session = %self.id, terminal_id, container = handle.container_name(), "terminal open");
        tokio::spawn(pump_output(terminal_id, output, me));
        let (keys, keys_rx) = mpsc::channel(KEYS_QUEUE);
        tokio::spawn(type_keys(handle.clone(), keys_rx));
        // One batch in flight and one waiting: the debounce merges the rest.
        let (files, files_rx) = mpsc::channel(1);
        tokio::spawn(update_files(self.id.clone(), handle.clone(), files_rx));
        let early = match std::mem::replace(
            &mut shared.state,
            State::Open {
                keys: keys.clone(),
                files,
                handle,
                _counted: crate::metrics::terminal_open(),
            },
        ) {
            State::Opening { early_input, .. } => early_input,
            State::Open { .. } => Vec::new(),
        };
        if !early.is_empty() {
            let _ = keys.try_send(KeyCmd::Write(early));
        }
        // Edits made while it started.
        shared.files_due = Some(Instant::now());
        let started = ServerMsg::TerminalStarted {
            terminal_id,
            client_id: shared.opener,
            name: shared.opener_name.clone(),
            cols: shared.size.cols,
            rows: shared.size.rows,
        };
        self.broadcast(&started, None, None);
    }

    /// `terminalStarted` and the recent output, to one participant.
    pub(super) fn show_terminal_to(&mut self, client_id: u64) {
        let Some(shared) = &self.terminal else {
            return;
        };
        let State::Open { handle, .. } = &shared.state else {
            return;
        };
        let started = ServerMsg::TerminalStarted {
            terminal_id: shared.terminal_id,
            client_id: shared.opener,
            name: shared.opener_name.clone(),
            cols: shared.size.cols,
            rows: shared.size.rows,
        };
        let replay = ServerMsg::TerminalOutput {
            terminal_id: shared.terminal_id,
            seq: shared.next_seq,
            data: String::from_utf8_lossy(&handle.replay()).into_owned(),
            replay: true,
        };
        self.send(client_id, &started);
        self.send(client_id, &replay);
    }

    /// An event of the terminal's output, from its pump.
    pub(super) fn terminal_event(&mut self, terminal_id: u64, event: TerminalEvent) {
        let Some(shared) = self
            .terminal
            .as_mut()
            .filter(|t| t.terminal_id == terminal_id)
        else {
            return;
        };
        let data = match event {
            TerminalEvent::Output(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            TerminalEvent::Lagged { dropped_bytes } => format!(
                "\r\n[chorus: {dropped_bytes} bytes of output dropped: written faster than the session can share]\r\n"
            ),
            TerminalEvent::Ended(end) => {
                let reason = match (&end, shared.closing.take()) {
                    (TerminalEnd::Closed, Some(why)) => why,
                    _ => end.to_string(),
                };
                info!(session = %self.id, terminal_id, %reason, "terminal ended");
                self.terminal = None;
                return self.broadcast(
                    &ServerMsg::TerminalEnded {
                        terminal_id,
                        reason,
                    },
                    None,
                    None,
                );
            }
        };
        let seq = shared.next_seq;
        shared.next_seq += 1;
        self.broadcast(
            &ServerMsg::TerminalOutput {
                terminal_id,
                seq,
                data,
                replay: false,
            },
            None,
            None,
        );
    }

    /// `terminalInput`: keystrokes, in the typist's size.
    pub(super) fn terminal_input(&mut self, client_id: u64, data: String) {
        let Some(shared) = self.terminal.as_mut() else {
            return self.no_terminal(client_id);
        };
        if data.is_empty() {
            return;
        }
        match &mut shared.state {
            State::Opening { early_input, .. } => {
                if early_input.len() + data.len() > MAX_EARLY_INPUT {
                    let message =
                        "the shared terminal is still starting; type again once it shows a prompt";
                    return self.send(
                        client_id,
                        &ServerMsg::error(ErrorCode::Overloaded, message, None),
                    );
                }
                early_input.extend_from_slice(data.as_bytes());
                shared.typist = Some(client_id);
            }
            State::Open { keys, .. } => {
                let keys = keys.clone();
                // All or nothing, so that a refused message leaves no half.
                if keys.capacity() < 2 {
                    let message = "the shared terminal is not taking keystrokes as fast as they come (its program is not reading); try again";
                    return self.send(
                        client_id,
                        &ServerMsg::error(ErrorCode::Overloaded, message, None),
                    );
                }
                let resized = shared.follow_typist(client_id);
                if let Some(size) = resized {
                    let _ = keys.try_send(KeyCmd::Resize(size));
                    let msg = ServerMsg::TerminalResized {
                        terminal_id: shared.terminal_id,
                        client_id,
                        cols: size.cols,
                        rows: size.rows,
                    };
                    self.broadcast(&msg, None, None);
                }
                let _ = keys.try_send(KeyCmd::Write(data.into_bytes()));
            }
        }
    }

    /// `terminalResize`: the sender's view; the terminal takes it if the
    /// sender is the one it follows.
    pub(super) fn terminal_resize(&mut self, client_id: u64, cols: u16, rows: u16) {
        let size = match view_size(Some(cols), Some(rows)) {
            Ok(size) => size,
            Err(message) => {
                return self.send(
                    client_id,
                    &ServerMsg::error(ErrorCode::BadMessage, message, None),
                )
            }
        };
        let Some(shared) = self.terminal.as_mut() else {
            return self.no_terminal(client_id);
        };
        shared.views.insert(client_id, size);
        let followed = shared.typist.unwrap_or(shared.opener);
        if followed != client_id {
            return;
        }
        let State::Open { keys, .. } = &shared.state else {
            shared.size = size;
            return;
        };
        if size == shared.size {
            return;
        }
        // A resize lost to a full queue is taken again at the next keystroke.
        if keys.try_send(KeyCmd::Resize(size)).is_ok() {
            shared.size = size;
            let msg = ServerMsg::TerminalResized {
                terminal_id: shared.terminal_id,
                client_id,
                cols,
                rows,
            };
            self.broadcast(&msg, None, None);
        }
    }

    /// `terminalStop`.
    pub(super) fn stop_terminal(&mut self, client_id: u64) {
        if self.terminal.is_none() {
            return self.no_terminal(client_id);
        }
        let name = self.participants[&client_id].info.name.clone();
        info!(session = %self.id, client_id, "terminal stopped by participant");
        self.end_terminal(format!("stopped by {name}"));
    }

    /// Ends the terminal, if any, saying `why` to everyone.
    pub(super) fn end_terminal(&mut self, why: String) {
        let Some(shared) = self.terminal.as_mut() else {
            return;
        };
        match &mut shared.state {
            State::Opening { cancel, .. } => {
                if let Some(cancel) = cancel.take() {
                    let _ = cancel.send(());
                }
                let terminal_id = shared.terminal_id;
                self.terminal = None;
                self.broadcast(
                    &ServerMsg::TerminalEnded {
                        terminal_id,
                        reason: why,
                    },
                    None,
                    None,
                );
            }
            State::Open { handle, .. } => {
                // Its pump reports the end once the container is gone.
                shared.closing.get_or_insert(why);
                let handle = handle.clone();
                tokio::spawn(async move { handle.close().await });
            }
        }
    }

    /// The participant's view is no longer there.
    pub(super) fn terminal_left(&mut self, client_id: u64) {
        if let Some(shared) = self.terminal.as_mut() {
            shared.views.remove(&client_id);
        }
    }

    /// When the terminal needs the session's attention: the next file
    /// update, or the end of the grace of a session nobody is in.
    pub(super) fn terminal_due(&self) -> Option<Instant> {
        let shared = self.terminal.as_ref()?;
        let grace = self.config.terminal_orphan_grace;
        let orphan = self.orphaned_since.map(|since| since + grace);
        match (shared.files_due, orphan) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Does what [`Session::terminal_due`] said was due.
    pub(super) fn terminal_tick(&mut self) {
        let now = Instant::now();
        if self
            .orphaned_since
            .is_some_and(|since| since + self.config.terminal_orphan_grace <= now)
        {
            self.orphaned_since = None;
            info!(session = %self.id, "nobody in the session; ending its terminal");
            return self.end_terminal("everyone left the session".to_owned());
        }
        if self
            .terminal
            .as_ref()
            .and_then(|t| t.files_due)
            .is_some_and(|due| due <= now)
        {
            self.send_terminal_files();
        }
    }

    /// A document changed: the container gets it within the debounce.
    pub(super) fn terminal_files_changed(&mut self) {
        if let Some(shared) = self.terminal.as_mut() {
            if matches!(shared.state, State::Open { .. }) && shared.files_due.is_none() {
                shared.files_due = Some(Instant::now() + FILES_DEBOUNCE);
            }
        }
    }

    fn send_terminal_files(&mut self) {
        let Some(shared) = self.terminal.as_ref() else {
            return;
        };
        let (files, synced) = self.terminal_files(&shared.synced);
        let Some(shared) = self.terminal.as_mut() else {
            return;
        };
        shared.files_due = None;
        if files.is_empty() {
            return;
        }
        let State::Open { files: sender, .. } = &shared.state else {
            return;
        };
        match sender.try_send(files) {
            Ok(()) => shared.synced.extend(synced),
            // The last batch is still unpacking: this one goes after it.
            Err(_) => shared.files_due = Some(Instant::now() + FILES_DEBOUNCE),
        }
    }

    /// The documents whose revision differs from `synced`, with the
    /// revisions they are at.
    #[allow(clippy::type_complexity)]
    fn terminal_files(
        &self,
        synced: &HashMap<String, u64>,
    ) -> (Vec<(String, String)>, HashMap<String, u64>) {
        let mut files = Vec::new();
        let mut revs = HashMap::new();
        for (path, shared) in &self.docs {
            let rev = shared.doc.rev();
            if synced.get(path) != Some(&rev) {
                files.push((path.clone(), shared.doc.text().to_string()));
                revs.insert(path.clone(), rev);
            }
        }
        (files, revs)
    }

    fn no_terminal(&mut self, client_id: u64) {
        self.send(
            client_id,
            &ServerMsg::error(
                ErrorCode::NoTerminal,
                "no shared terminal is open in this session (open one with chorus.terminal)",
                None,
            ),
        );
    }
}

impl SharedTerminal {
    /// Makes `client_id` the typist; the size to take, if it changes.
    fn follow_typist(&mut self, client_id: u64) -> Option<TerminalSize> {
        self.typist = Some(client_id);
        let view = *self.views.get(&client_id)?;
        (view != self.size).then(|| {
            self.size = view;
            view
        })
    }
}

/// Relays the terminal's output to the session at most
/// [`OUTPUT_BYTES_PER_SEC`]; while it waits, the sandbox's queue fills and
/// then drops (reported as `Lagged`).
async fn pump_output(
    terminal_id: u64,
    mut output: mpsc::Receiver<TerminalEvent>,
    me: mpsc::Sender<SessionCmd>,
) {
    let mut allowance = OUTPUT_BURST_BYTES;
    let mut last = Instant::now();
    while let Some(event) = output.recv().await {
        if let TerminalEvent::Output(bytes) = &event {
            let now = Instant::now();
            allowance = (allowance + now.duration_since(last).as_secs_f64() * OUTPUT_BYTES_PER_SEC)
                .min(OUTPUT_BURST_BYTES);
            last = now;
            allowance -= bytes.len() as f64;
            if allowance < 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(-allowance / OUTPUT_BYTES_PER_SEC))
                    .await;
            }
        }
        if me
            .send(SessionCmd::TerminalEvent { terminal_id, event })
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn type_keys(handle: TerminalHandle, mut keys: mpsc::Receiver<KeyCmd>) {
    while let Some(cmd) = keys.recv().await {
        let done = match cmd {
            KeyCmd::Write(bytes) => handle.write(bytes).await,
            KeyCmd::Resize(size) => handle.resize(size).await,
        };
        // An ended terminal says so through its output's last event.
        if done.is_err() {
            return;
        }
    }
}

async fn update_files(
    session: String,
    handle: TerminalHandle,
    mut batches: mpsc::Receiver<Vec<(String, String)>>,
) {
    while let Some(files) = batches.recv().await {
        if let Err(err) = handle.update_files(&files).await {
            if handle.ended().is_some() {
                return;
            }
            warn!(session = %session, cause = %err, files = files.len(), "terminal file update failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_bounded_and_default_to_80_by_24() {
        assert_eq!(
            view_size(None, None),
            Ok(TerminalSize { cols: 80, rows: 24 })
        );
        assert_eq!(
            view_size(Some(120), Some(40)),
            Ok(TerminalSize {
                cols: 120,
                rows: 40
            })
        );
        assert!(view_size(Some(0), Some(10)).is_err());
        assert!(view_size(Some(10), None).is_err());
        assert!(view_size(Some(MAX_CELLS + 1), Some(10)).is_err());
    }
}
