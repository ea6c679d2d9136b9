//! The session's shared terminal (issue 16) as this editor sees it, and the
//! `chorus.terminal*` commands that drive it.
//!
//! * An editor whose plugin declared the Chorus extensions draws a real
//!   terminal: it gets the hub's terminal messages as `chorus/terminal*`
//!   notifications, as they are, and nothing else from here.
//! * Any other editor (Helix, a plain LSP client) has nowhere to draw one:
//!   the output arrives as `window/logMessage` lines `[terminal · NAME] …`
//!   (NAME: who opened it), with the escape sequences and carriage returns
//!   taken out, and `window/showMessage` says when the terminal opens (and
//!   how to type into it: `chorus.input`) and ends. A line nothing has
//!   ended yet, such as a shell's prompt, is logged once the output pauses
//!   for [`PARTIAL_LINE_AFTER`], or when this user types; the whole line is
//!   logged again when it ends with more on it (`>>> ` then `>>> x = 2`).
//! * `chorus.input`, the run's input command, types a line into the
//!   terminal when this proxy knows of no run going but of an open
//!   terminal: the one way to type from an editor without a terminal view.
//!
//! Invariant: the proxy keeps no terminal state the hub does not send
//! again: at each welcome it forgets the terminal, and the hub's
//! `terminalStarted` to a (re)joining participant brings it back.

use std::time::{Duration, Instant};

use chorus_protocol::wire::ClientMsg;
use serde_json::Value;
use tokio::sync::mpsc;
use tower_lsp_server::ls_types::MessageType;

use crate::core::Event;
use crate::hub_link::Link;
use crate::lsp_ext::{
    self, InputArguments, Requested, TerminalArguments, TerminalEnded, TerminalEndedParams,
    TerminalInputArguments, TerminalOutput, TerminalOutputParams, TerminalResizeArguments,
    TerminalResized, TerminalResizedParams, TerminalStarted, TerminalStartedParams,
};
use crate::notifier::Notifier;
use crate::runs::{prefixed, Lines};

/// How long output must pause before an unfinished line (a prompt) is
/// logged: long enough that a line arriving in a few chunks is logged
/// whole, short enough that a prompt seems to appear when it is written.
pub const PARTIAL_LINE_AFTER: Duration = Duration::from_millis(100);

/// Ctrl-C and Ctrl-D, as a terminal sends them.
const INTERRUPT: &str = "\u{3}";
const END_OF_INPUT: &str = "\u{4}";

/// The shared terminal and what this editor was shown of it.
pub(crate) struct Terminal {
    notifier: Notifier,
    /// For [`Event::TerminalIdle`], the timer that logs a waiting prompt.
    events: mpsc::UnboundedSender<Event>,
    /// The editor's plugin draws the terminal itself (`chorus/terminal*`).
    extensions: bool,
    /// The terminal open in the session, once the hub said so.
    open: Option<OpenTerminal>,
    /// The last terminal the user was told had opened: the hub says so
    /// again at each rejoin, which is no news.
    announced: Option<u64>,
    /// The last terminal whose live output was logged: a replay of it
    /// (the hub's, at a rejoin) would repeat it.
    logged_live: Option<u64>,
}

/// The open terminal, and for an editor without the extensions, its log.
struct OpenTerminal {
    terminal_id: u64,
    /// `[terminal · NAME] `, before each log line.
    prefix: String,
    text: PlainText,
    lines: Lines,
    /// The unfinished line as it was logged (a prompt), so that it is not
    /// logged twice when a line break alone ends it.
    partial_logged: Option<String>,
    last_output: Instant,
    /// An [`Event::TerminalIdle`] is on its way.
    idle_timer: bool,
}

impl Terminal {
    pub(crate) fn new(notifier: Notifier, events: mpsc::UnboundedSender<Event>) -> Terminal {
        Terminal {
            notifier,
            events,
            extensions: false,
            open: None,
            announced: None,
            logged_live: None,
        }
    }

    pub(crate) fn set_extensions(&mut self, extensions: bool) {
        self.extensions = extensions;
    }

    /// The hub welcomed us (again): whether a terminal is open, its next
    /// `terminalStarted` will say.
    pub(crate) fn welcomed(&mut self) {
        self.flush_partial();
        self.open = None;
    }

    pub(crate) fn started(&mut self, params: TerminalStartedParams) {
        if self.open.as_ref().map(|open| open.terminal_id) != Some(params.terminal_id) {
            self.open = Some(OpenTerminal {
                terminal_id: params.terminal_id,
                prefix: format!("[terminal · {}] ", params.name),
                text: PlainText::default(),
                lines: Lines::default(),
                partial_logged: None,
                last_output: Instant::now(),
                idle_timer: false,
            });
        }
        if self.extensions {
            self.notifier.notify::<TerminalStarted>(params);
            return;
        }
        if self.announced == Some(params.terminal_id) {
            return;
        }
        self.announced = Some(params.terminal_id);
        let name = &params.name;
        self.log(format!(
            "[terminal · {name}] opened ({}×{})",
            params.cols, params.rows
        ));
        self.notifier.tell_user(
            MessageType::INFO,
            format!(
                "Chorus: {name} opened the shared terminal: type with :lsp-workspace-command chorus.input TEXT (its output is in the log)"
            ),
        );
    }

    pub(crate) fn output(&mut self, params: TerminalOutputParams) {
        if self.extensions {
            self.notifier.notify::<TerminalOutput>(params);
            return;
        }
        let Some(open) = self
            .open
            .as_mut()
            .filter(|open| open.terminal_id == params.terminal_id)
        else {
            return;
        };
        if params.replay {
            if self.logged_live == Some(params.terminal_id) {
                return;
            }
            // The replay starts wherever the hub's memory of the output
            // does, maybe inside an escape sequence: start afresh.
            open.text = PlainText::default();
        } else {
            self.logged_live = Some(params.terminal_id);
        }
        open.last_output = Instant::now();
        let plain = open.text.strip(&params.data);
        let mut lines = open.lines.push(&plain);
        if !lines.is_empty() {
            // Only a line break after the prompt logged: nothing new.
            if open.partial_logged.take().as_ref() == lines.first() {
                lines.remove(0);
            }
        }
        if !lines.is_empty() {
            let text = prefixed(&open.prefix, &lines);
            self.log(text);
        }
        self.arm_idle_timer();
    }

    pub(crate) fn resized(&mut self, params: TerminalResizedParams) {
        if self.extensions {
            self.notifier.notify::<TerminalResized>(params);
        }
    }

    pub(crate) fn ended(&mut self, params: TerminalEndedParams) {
        let prefix = match self
            .open
            .take_if(|open| open.terminal_id == params.terminal_id)
        {
            Some(open) => {
                if !self.extensions {
                    if let Some(line) = open.unlogged_partial() {
                        self.log(format!("{}{line}", open.prefix));
                    }
                }
                open.prefix
            }
            None => "[terminal] ".to_owned(),
        };
        if self.extensions {
            self.notifier.notify::<TerminalEnded>(params);
            return;
        }
        self.log(format!("{prefix}ended: {}", params.reason));
        self.notifier.tell_user(
            MessageType::INFO,
            format!("Chorus: the shared terminal ended: {}", params.reason),
        );
    }

    /// The idle timer fired: logs the unfinished line if the output has
    /// paused long enough, else waits the rest of the pause.
    pub(crate) fn idle(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        open.idle_timer = false;
        if open.last_output.elapsed() >= PARTIAL_LINE_AFTER {
            self.flush_partial();
        } else {
            self.arm_idle_timer();
        }
    }

    /// Carries out a `chorus.terminal*` command, or `chorus.input` when it
    /// is for the terminal (`run_going`: this proxy knows of a run, which
    /// the input is for); `None` for any other command, which is
    /// `commands.rs`'s.
    pub(crate) fn command(
        &mut self,
        command: &str,
        arguments: &[Value],
        run_going: bool,
        link: &Link,
    ) -> Option<Result<Value, String>> {
        let for_terminal = match command {
            lsp_ext::TERMINAL
            | lsp_ext::TERMINAL_INPUT
            | lsp_ext::TERMINAL_RESIZE
            | lsp_ext::TERMINAL_STOP => true,
            lsp_ext::INPUT => !run_going && self.open.is_some(),
            _ => false,
        };
        for_terminal.then(|| {
            crate::commands::check_connected(link)?;
            self.execute(command, arguments, link)
        })
    }

    fn execute(
        &mut self,
        command: &str,
        arguments: &[Value],
        link: &Link,
    ) -> Result<Value, String> {
        match command {
            lsp_ext::TERMINAL => {
                let TerminalArguments { cols, rows } =
                    TerminalArguments::from_arguments(arguments)?;
                link.send(&ClientMsg::Terminal { cols, rows });
                Ok(Value::Null)
            }
            lsp_ext::TERMINAL_INPUT => {
                let TerminalInputArguments { data } =
                    TerminalInputArguments::from_arguments(arguments)?;
                self.typed(data, link);
                Ok(Value::Null)
            }
            lsp_ext::TERMINAL_RESIZE => {
                let TerminalResizeArguments { cols, rows } =
                    TerminalResizeArguments::from_arguments(arguments)?;
                link.send(&ClientMsg::TerminalResize { cols, rows });
                Ok(Value::Null)
            }
            lsp_ext::TERMINAL_STOP => {
                link.send(&ClientMsg::TerminalStop {});
                Ok(Value::Null)
            }
            _ => {
                let input = InputArguments::from_arguments(arguments)?;
                self.typed(keystrokes(&input), link);
                // Answered as a run's input is: the command is the same.
                serde_json::to_value(Requested {
                    requested: "input".to_owned(),
                })
                .map_err(|err| format!("Chorus: cannot encode the answer: {err}"))
            }
        }
    }

    /// Sends this user's keystrokes. The prompt they answer is logged
    /// first if it was not yet: the echo that follows continues it.
    fn typed(&mut self, data: String, link: &Link) {
        self.flush_partial();
        link.send(&ClientMsg::TerminalInput { data });
    }

    /// Logs the unfinished line, for an editor without the extensions, if
    /// it holds something not logged yet.
    fn flush_partial(&mut self) {
        if self.extensions {
            return;
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if let Some(line) = open.unlogged_partial() {
            open.partial_logged = Some(line.clone());
            let text = format!("{}{line}", open.prefix);
            self.log(text);
        }
    }

    /// Starts the timer that logs an unfinished line once the output
    /// pauses, unless it runs already or there is nothing to log.
    fn arm_idle_timer(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if open.idle_timer || open.unlogged_partial().is_none() {
            return;
        }
        open.idle_timer = true;
        let wait = PARTIAL_LINE_AFTER.saturating_sub(open.last_output.elapsed());
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = events.send(Event::TerminalIdle);
        });
    }

    fn log(&self, message: String) {
        self.notifier.log(MessageType::INFO, message);
    }
}

impl OpenTerminal {
    /// The unfinished line, unless it is empty or was logged as it is.
    fn unlogged_partial(&self) -> Option<String> {
        let partial = self.lines.partial();
        let logged = self.partial_logged.as_deref() == Some(partial);
        (!partial.is_empty() && !logged).then(|| partial.to_owned())
    }
}

/// `chorus.input`'s arguments as keystrokes: the text as lines typed
/// (`\r` is Enter; a final line break is the Enter that ends it, and the
/// text always ends with one), then Ctrl-D, then Ctrl-C.
pub(crate) fn keystrokes(input: &InputArguments) -> String {
    let mut keys = String::new();
    if let Some(text) = input.text.as_deref().filter(|text| !text.is_empty()) {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        keys.push_str(&text.replace("\r\n", "\r").replace('\n', "\r"));
        keys.push('\r');
    }
    if input.eof {
        keys.push_str(END_OF_INPUT);
    }
    if input.interrupt {
        keys.push_str(INTERRUPT);
    }
    keys
}

/// Takes the escape sequences (colours, cursor moves, titles) and the
/// control characters out of a terminal's output, across chunks: what is
/// left is the text a person reads, its lines ended by `\n`.
#[derive(Debug, Default)]
struct PlainText {
    state: Escape,
}

/// Where [`PlainText`] is in the output (ECMA-48's shapes, which is what
/// terminals write).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Escape {
    /// Text.
    #[default]
    Text,
    /// After ESC.
    Esc,
    /// ESC and intermediate bytes (`ESC ( B`), until a final byte.
    EscIntermediate,
    /// A control sequence (`ESC [ 1 ; 31 m`), until a final byte.
    Csi,
    /// A string (OSC: a window title; DCS, SOS, PM, APC), until BEL or ST.
    String,
    /// ESC inside a string: `\` makes the ST that ends it.
    StringEsc,
}

impl PlainText {
    fn strip(&mut self, data: &str) -> String {
        let mut text = String::with_capacity(data.len());
        for c in data.chars() {
            self.state = match (self.state, c) {
                (Escape::Text, '\u{1b}') => Escape::Esc,
                (Escape::Text, '\u{9b}') => Escape::Csi,
                (Escape::Text, '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}') => {
                    Escape::String
                }
                (Escape::Text, '\n' | '\t') => {
                    text.push(c);
                    Escape::Text
                }
                // `\r`, BEL, backspace and the other controls move the
                // cursor or ring: nothing to read.
                (Escape::Text, c) if c.is_control() => Escape::Text,
                (Escape::Text, c) => {
                    text.push(c);
                    Escape::Text
                }
                (Escape::Esc, '[') => Escape::Csi,
                (Escape::Esc, ']' | 'P' | 'X' | '^' | '_') => Escape::String,
                (Escape::Esc, '\u{1b}') => Escape::Esc,
                (Escape::Esc | Escape::EscIntermediate, ' '..='/') => Escape::EscIntermediate,
                // `ESC 7`, `ESC =`, `ESC ( B`: done.
                (Escape::Esc | Escape::EscIntermediate, _) => Escape::Text,
                (Escape::Csi, '\u{1b}') => Escape::Esc,
                (Escape::Csi, '@'..='~' | '\u{18}' | '\u{1a}') => Escape::Text,
                (Escape::Csi, _) => Escape::Csi,
                (Escape::String, '\u{7}' | '\u{9c}') => Escape::Text,
                (Escape::String | Escape::StringEsc, '\u{1b}') => Escape::StringEsc,
                (Escape::String, _) => Escape::String,
                (Escape::StringEsc, '\\') => Escape::Text,
                (Escape::StringEsc, _) => Escape::String,
            };
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_all(chunks: &[&str]) -> String {
        let mut plain = PlainText::default();
        chunks.iter().map(|chunk| plain.strip(chunk)).collect()
    }

    #[test]
    fn escape_sequences_and_carriage_returns_are_taken_out() {
        // bash's prompt with bracketed paste, colours and a window title.
        let prompt = "\u{1b}[?2004h\u{1b}]0;ada@box: ~\u{7}\u{1b}[01;32mada@box\u{1b}[00m:~$ ";
        assert_eq!(strip_all(&[prompt]), "ada@box:~$ ");
        assert_eq!(
            strip_all(&["ls\r\n\u{1b}[0m\u{1b}[01;34msrc\u{1b}[0m\tREADME\r\n"]),
            "ls\nsrc\tREADME\n"
        );
        // Charset selection, keypad mode, a string ended by ST, C1 CSI.
        assert_eq!(
            strip_all(&["\u{1b}(B\u{1b}=a\u{1b}P1$r\u{1b}\\b\u{9b}2Kc\u{8}\u{7}"]),
            "abc"
        );
    }

    #[test]
    fn an_escape_sequence_split_between_chunks_is_still_taken_out() {
        assert_eq!(
            strip_all(&[
                "red: \u{1b}",
                "[3",
                "1m",
                "hot\u{1b}]0;ti",
                "tle\u{1b}",
                "\\!"
            ]),
            "red: hot!"
        );
    }

    #[test]
    fn chorus_input_types_lines_then_control_keys() {
        let typed = |text: Option<&str>, eof, interrupt| {
            keystrokes(&InputArguments {
                text: text.map(str::to_owned),
                eof,
                interrupt,
            })
        };
        assert_eq!(typed(Some("ls\n"), false, false), "ls\r");
        assert_eq!(typed(Some("x = 2"), false, false), "x = 2\r");
        assert_eq!(typed(Some("a\r\nb\n"), false, false), "a\rb\r");
        assert_eq!(typed(None, false, true), "\u{3}");
        assert_eq!(typed(Some("exit()\n"), true, false), "exit()\r\u{4}");
    }
}
