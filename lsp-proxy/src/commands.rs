//! The `chorus.*` commands the editor runs through
//! `workspace/executeCommand`:
//! * `chorus.run [uri] [{stdin, args, language}]` asks the hub to run a
//!   shared document (by default the one last opened or edited);
//! * `chorus.stop` stops the session's run;
//! * `chorus.follow [name]` follows a participant's cursor, or no one's;
//! * `chorus.share` publishes the workspace folder in the background
//!   (`share.rs`), with `$/progress` and a final message.
//!
//! A command is answered at once and only says the request went out:
//! a run's output and result arrive as notifications, at every
//! participant. Commands need a connected hub; the answer says so
//! otherwise, since the user is waiting for something to happen.

use chorus_protocol::wire::ClientMsg;
use serde::Serialize;
use serde_json::Value;
use tower_lsp_server::ls_types::Uri;

use crate::documents::Documents;
use crate::hub_link::Link;
use crate::lsp_ext::{
    self, FollowArguments, Following, Requested, ResyncArguments, RunArguments, RunOptions,
};
use crate::presence::Presence;
use crate::share::EditorShare;

/// What the commands remember between calls.
#[derive(Default)]
pub(crate) struct Commands {
    /// The document last opened or edited: what `chorus.run` runs by
    /// default.
    last_active: Option<Uri>,
    /// Where `chorus.share` publishes to; `None` without a workspace
    /// folder or session.
    share: Option<EditorShare>,
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

    /// Carries out `command`; the error is the message the editor shows.
    pub(crate) fn execute(
        &self,
        command: &str,
        arguments: &[Value],
        link: &Link,
        docs: &mut Documents,
        presence: &mut Presence,
    ) -> Result<Value, String> {
        if !link.is_configured() {
            return Err("Chorus: no session configured".into());
        }
        if !link.is_connected() {
            return Err("Chorus: not connected to the hub".into());
        }
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
        let (uri, options) = match RunArguments::from_arguments(arguments)? {
            Some(RunArguments { uri, options }) => (uri, options.unwrap_or_default()),
            None => (
                self.last_active
                    .clone()
                    .ok_or("chorus.run: no document to run; open one or pass its URI")?,
                RunOptions::default(),
            ),
        };
        let doc = docs
            .path_of(&uri)
            .ok_or_else(|| format!("chorus.run: {} is not shared in this session", uri.as_str()))?;
        link.send(&ClientMsg::Run {
            doc: doc.clone(),
            language: options.language,
            stdin: options.stdin,
            args: options.args.unwrap_or_default(),
        });
        Ok(Requested { requested: doc })
    }
}

/// A command's answer as the JSON `workspace/executeCommand` carries.
fn answer<T: Serialize>(result: &T) -> Result<Value, String> {
    // Cannot fail: the answers are structs of strings.
    serde_json::to_value(result).map_err(|err| format!("Chorus: cannot encode the answer: {err}"))
}
