//! The `chorus.*` commands the editor runs through
//! `workspace/executeCommand`:
//! * `chorus.run [uri] [{stdin, args, language, mode, command}]` asks the
//!   hub to run a shared document (by default the one last opened or
//!   edited), as a run, its tests or a release build, or with a command
//!   line of the user's;
//! * `chorus.stop` stops the session's run;
//! * `chorus.input [text | {text, eof, interrupt}]` sends input to it;
//! * `chorus.follow [name]` follows a participant's cursor, or no one's;
//! * `chorus.share` publishes the workspace folder in the background
//!   (`share.rs`), with `$/progress` and a final message;
//! * `chorus.resync [uri]` puts the session's text back in a buffer;
//! * `chorus.files` lists the session's files;
//! * `chorus.terminal*`, the shared terminal's, are `terminal.rs`'s, and so
//!   is `chorus.input` when it types into the terminal.
//!
//! A command is answered at once and only says the request went out:
//! a run's output and result arrive as notifications, at every
//! participant. The exception is `chorus.files`, answered when the hub's
//! listing arrives: the editor asked for the list, not for a promise.
//! Commands need a connected hub; the answer says so otherwise, since the
//! user is waiting for something to happen.

use std::collections::VecDeque;

use chorus_protocol::wire::{ClientMsg, FileEntry};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;
use tower_lsp_server::ls_types::Uri;

use crate::documents::Documents;
use crate::hub_link::Link;
use crate::lsp_ext::{
    self, Files, FollowArguments, Following, InputArguments, Requested, ResyncArguments,
    RunArguments, SessionFile,
};
use crate::presence::Presence;
use crate::share::EditorShare;

/// Where a command's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Value, String>>;

/// Who sent a `files{}` the hub has yet to answer.
enum FilesAsker {
    /// `disk.rs`, at the welcome: the answer is its.
    Disk,
    /// The editor's `chorus.files`.
    Editor(Reply),
}

/// What the commands remember between calls.
#[derive(Default)]
pub(crate) struct Commands {
    /// The document last opened or edited: what `chorus.run` runs by
    /// default.
    last_active: Option<Uri>,
    /// Where `chorus.share` publishes to; `None` without a workspace
    /// folder or session.
    share: Option<EditorShare>,
    /// The `files{}` sent on this connection and not yet answered, in the
    /// order sent: the hub answers each with one `files{entries}`, in
    /// order, so the next answer is the front one's.
    files_asked: VecDeque<FilesAsker>,
    /// The hub's welcome announced workspace limits: a hub that old has no
    /// `files` to answer `chorus.files` with.
    hub_lists_files: bool,
}

impl Commands {
    /// The editor opened or changed `uri` (shared or not).
    pub(crate) fn note_active(&mut self, uri: &Uri) {
        if self.last_active.as_ref() != Some(uri) {
            self.last_active = Some(uri.clone());
        }
    }

    /// What `initialize` said `chorus.share` needs.
    pub(crate) fn set_share(&mut self, share: EditorShare) {
        self.share = Some(share);
    }

    /// A new connection to the hub: what was asked on the last one will
    /// not be answered. `disk_asked_files`: `disk.rs` asked for the tree.
    pub(crate) fn welcomed(&mut self, lists_files: bool, disk_asked_files: bool) {
        self.connection_lost("the connection to the hub was renewed");
        self.hub_lists_files = lists_files;
        if disk_asked_files {
            self.files_asked.push_back(FilesAsker::Disk);
        }
    }

    /// The link dropped: `chorus.files` still waiting are told why.
    pub(crate) fn connection_lost(&mut self, why: &str) {
        for asker in self.files_asked.drain(..) {
            if let FilesAsker::Editor(reply) = asker {
                let _ = reply.send(Err(format!(
                    "Chorus: {why} before the hub listed the files; try again"
                )));
            }
        }
    }

    /// The hub's `files{entries}`: answers the `chorus.files` it was for
    /// and returns `None`, or returns the entries when they are for
    /// `disk.rs` (or nobody we know of, which is how they were always
    /// handled).
    pub(crate) fn files_arrived(
        &mut self,
        entries: Vec<FileEntry>,
        docs: &Documents,
    ) -> Option<Vec<FileEntry>> {
        let Some(FilesAsker::Editor(reply)) = self.files_asked.pop_front() else {
            return Some(entries);
        };
        let files = entries
            .into_iter()
            .map(|entry| SessionFile {
                uri: docs.uri_of(&entry.path),
                path: entry.path,
                size: entry.size,
                not_synced: entry.not_synced,
            })
            .collect();
        let _ = reply.send(answer(&Files { files }));
        None
    }

    /// Carries out `command` and answers it through `reply`: at once, or
    /// for `chorus.files` once the hub has answered.
    pub(crate) fn execute(
        &mut self,
        command: &str,
        arguments: &[Value],
        reply: Reply,
        link: &Link,
        docs: &mut Documents,
        presence: &mut Presence,
    ) {
        if command == lsp_ext::FILES && link.is_configured() && link.is_connected() {
            if !self.hub_lists_files {
                let _ = reply.send(Err(
                    "Chorus: this hub does not list the session's files; upgrade it".into(),
                ));
                return;
            }
            link.send(&ClientMsg::Files {});
            self.files_asked.push_back(FilesAsker::Editor(reply));
            return;
        }
        let _ = reply.send(self.execute_now(command, arguments, link, docs, presence));
    }

    /// Carries out a command answered at once; the error is the message
    /// the editor shows.
    fn execute_now(
        &self,
        command: &str,
        arguments: &[Value],
        link: &Link,
        docs: &mut Documents,
        presence: &mut Presence,
    ) -> Result<Value, String> {
        check_connected(link)?;
        match command {
            lsp_ext::RUN => answer(&self.run(arguments, link, docs)?),
            lsp_ext::FOLLOW => {
                let FollowArguments { name } = FollowArguments::from_arguments(arguments)?;
                presence.follow(name);
                answer(&Following {
                    following: presence.following().map(str::to_owned),
                })
            }
            lsp_ext::STOP => {
                link.send(&ClientMsg::Stop {});
                answer(&Requested {
                    requested: "stop".to_owned(),
                })
            }
            lsp_ext::INPUT => {
                let InputArguments {
                    text,
                    eof,
                    interrupt,
                } = InputArguments::from_arguments(arguments)?;
                link.send(&ClientMsg::Input {
                    text: text.filter(|text| !text.is_empty()),
                    eof,
                    interrupt,
                });
                answer(&Requested {
                    requested: "input".to_owned(),
                })
            }
            lsp_ext::SHARE => {
                let share = self
                    .share
                    .as_ref()
                    .ok_or("Chorus: no workspace folder to share")?;
                share.start()?;
                answer(&Requested {
                    requested: "share".to_owned(),
                })
            }
            lsp_ext::RESYNC => {
                let ResyncArguments { uri } = ResyncArguments::from_arguments(arguments)?;
                let uri = uri
                    .or_else(|| self.last_active.clone())
                    .ok_or("chorus.resync: no document to resync; open one or pass its URI")?;
                let path = docs.path_of(&uri).ok_or_else(|| {
                    format!(
                        "chorus.resync: {} is not shared in this session",
                        uri.as_str()
                    )
                })?;
                docs.heal(Some(&uri), "asked for with chorus.resync", link);
                answer(&Requested { requested: path })
            }
            other => Err(format!(
                "unknown command {other:?}; Chorus offers {}",
                lsp_ext::COMMANDS.join(", ")
            )),
        }
    }

    fn run(&self, arguments: &[Value], link: &Link, docs: &Documents) -> Result<Requested, String> {
        let RunArguments { uri, options } = RunArguments::from_arguments(arguments)?;
        let uri = uri
            .or_else(|| self.last_active.clone())
            .ok_or("chorus.run: no document to run; open one or pass its URI")?;
        let options = options.unwrap_or_default();
        let doc = docs
            .path_of(&uri)
            .ok_or_else(|| format!("chorus.run: {} is not shared in this session", uri.as_str()))?;
        link.send(&ClientMsg::Run {
            doc: doc.clone(),
            language: options.language,
            stdin: options.stdin,
            stdin_eof: options.stdin_eof,
            args: options.args.unwrap_or_default(),
            mode: options.mode.unwrap_or_default(),
            command: options.command,
        });
        Ok(Requested { requested: doc })
    }
}

/// Why a command cannot go to the hub now, if it cannot.
pub(crate) fn check_connected(link: &Link) -> Result<(), String> {
    if !link.is_configured() {
        return Err("Chorus: no session configured".into());
    }
    if !link.is_connected() {
        return Err("Chorus: not connected to the hub".into());
    }
    Ok(())
}

/// A command's answer as the JSON `workspace/executeCommand` carries.
fn answer<T: Serialize>(result: &T) -> Result<Value, String> {
    // Cannot fail: the answers are structs of strings.
    serde_json::to_value(result).map_err(|err| format!("Chorus: cannot encode the answer: {err}"))
}
