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
use serde_json::{json, Value};
use tower_lsp_server::ls_types::Uri;

use crate::documents::Documents;
use crate::hub_link::Link;
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
        docs: &Documents,
        presence: &mut Presence,
    ) -> Result<Value, String> {
        if !link.is_configured() {
            return Err("Chorus: no session configured".into());
        }
        if !link.is_connected() {
            return Err("Chorus: not connected to the hub".into());
        }
        match command {
            "chorus.run" => self.run(arguments, link, docs),
            "chorus.follow" => {
                let follow = match arguments.first() {
                    None => None,
                    Some(value) => Some(
                        value
                            .as_str()
                            .ok_or("chorus.follow takes a participant's name")?
                            .to_owned(),
                    ),
                };
                presence.follow(follow);
                Ok(json!({"following": presence.following()}))
            }
            "chorus.stop" => {
                link.send(&ClientMsg::Stop {});
                Ok(json!({"requested": "stop"}))
            }
            "chorus.share" => {
                let share = self
                    .share
                    .as_ref()
                    .ok_or("Chorus: no workspace folder to share")?;
                share.start()?;
                Ok(json!({"requested": "share"}))
            }
            other => Err(format!(
                "unknown command {other:?}; Chorus offers chorus.run, chorus.stop, chorus.follow and chorus.share"
            )),
        }
    }

    fn run(&self, arguments: &[Value], link: &Link, docs: &Documents) -> Result<Value, String> {
        let uri = match arguments.first() {
            Some(value) => {
                let text = value
                    .as_str()
                    .ok_or("chorus.run takes a document URI string")?;
                text.parse::<Uri>()
                    .map_err(|err| format!("chorus.run: bad URI {text:?}: {err}"))?
            }
            None => self
                .last_active
                .clone()
                .ok_or("chorus.run: no document to run; open one or pass its URI")?,
        };
        let doc = docs
            .path_of(&uri)
            .ok_or_else(|| format!("chorus.run: {} is not shared in this session", uri.as_str()))?;
        // Optional second argument: {"stdin": "...", "args": [...], "language": "..."}.
        let options = arguments.get(1);
        let text_field = |key: &str| {
            options
                .and_then(|o| o.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let args = match options.and_then(|o| o.get("args")) {
            None => Vec::new(),
            Some(list) => serde_json::from_value::<Vec<String>>(list.clone())
                .map_err(|_| "chorus.run: \"args\" must be a list of strings".to_owned())?,
        };
        link.send(&ClientMsg::Run {
            doc: doc.clone(),
            language: text_field("language"),
            stdin: text_field("stdin"),
            args,
        });
        Ok(json!({"requested": doc}))
    }
}
