//! A guard in front of tower-lsp-server's reader: every frame the editor
//! sends is checked before the server sees it.
//!
//! Why: tower-lsp-server's codec stops reading for good at the first frame
//! that is not UTF-8 (the proxy then exits), and drops a frame that is not
//! JSON. Editors do send such frames: a Neovim buffer can hold invalid
//! UTF-8 (an API call that splits a character), a VS Code one a lone
//! surrogate. Either way a change would be lost and that editor would
//! never agree with the others again.
//!
//! Invariants:
//! * A sound frame passes through byte for byte, in order.
//! * A damaged frame is repaired where it can be (invalid UTF-8 replaced
//!   with U+FFFD, so that a request still gets its answer and a change
//!   lands roughly where it was typed), except `didOpen`, whose text may be
//!   a file that is not text at all: that document is not shared. U+0000
//!   is damage too (no hub stores it), except in `chorus.terminal.input`'s
//!   keystrokes.
//! * Every damaged frame is followed, in the same stream, by a
//!   [`DAMAGED_METHOD`] notification naming what it could recover, so
//!   that the core resyncs that document after whatever the repaired frame
//!   did, never before it.

use chorus_protocol::wire::holds_nul;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tracing::{error, warn};

/// The notification the guard adds after a damaged frame; internal to the
/// proxy (an editor never sends it).
pub const DAMAGED_METHOD: &str = "chorus/internal/damagedFrame";

/// Header blocks longer than this are garbage, not LSP.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Bodies longer than this are skipped unread (a 10 MB document's
/// `didOpen` is far below it).
const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;

/// What the guard could tell about a damaged frame.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Damaged {
    /// The frame's method, if it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `params.textDocument.uri`, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// What was wrong with it, for the log and the user.
    pub reason: String,
    /// Whether a repaired frame went through in its place.
    pub repaired: bool,
}

/// Copies LSP frames from `input` to `output`, repairing or dropping the
/// damaged ones and announcing each (see the module docs). Returns when
/// `input` ends or `output` closes.
pub async fn guard<R, W>(input: R, mut output: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BufReader::new(input);
    loop {
        let frame = match read_frame(&mut input).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(err) => {
                error!(cause = %err, "cannot read from the editor");
                return;
            }
        };
        let (body, damaged) = match frame {
            Frame::Body(body) => check(body),
            Frame::Garbage(reason) => (
                None,
                Some(Damaged {
                    reason,
                    ..Damaged::default()
                }),
            ),
        };
        if let Some(body) = body {
            if write_frame(&mut output, &body).await.is_err() {
                return;
            }
        }
        if let Some(damaged) = damaged {
            warn!(method = ?damaged.method, uri = ?damaged.uri, reason = %damaged.reason, repaired = damaged.repaired, "damaged frame from the editor");
            let note = serde_json::json!({
                "jsonrpc": "2.0",
                "method": DAMAGED_METHOD,
                "params": damaged,
            });
            if write_frame(&mut output, note.to_string().as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
        if output.flush().await.is_err() {
            return;
        }
    }
}

enum Frame {
    Body(Vec<u8>),
    /// Headers without a usable length, or a body too large to keep.
    Garbage(String),
}

async fn read_frame<R: AsyncRead + Unpin>(
    input: &mut BufReader<R>,
) -> std::io::Result<Option<Frame>> {
    let mut length: Option<usize> = None;
    let mut header_bytes = 0;
    let mut bad_header = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: a "line" that never ends must not grow without limit.
        let n = (&mut *input)
            .take(MAX_HEADER_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        header_bytes += n;
        if line == b"\r\n" || line == b"\n" {
            if length.is_some() || bad_header.is_some() {
                break;
            }
            continue; // stray blank line between frames
        }
        if header_bytes > MAX_HEADER_BYTES {
            bad_header = Some(format!("headers longer than {MAX_HEADER_BYTES} bytes"));
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let Some((name, value)) = text.split_once(':') else {
            bad_header.get_or_insert_with(|| format!("not a header: {:?}", text.trim_end()));
            continue;
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            match value.trim().parse() {
                Ok(n) => length = Some(n),
                Err(_) => bad_header = Some(format!("bad Content-Length {:?}", value.trim())),
            }
        }
    }
    let Some(length) = length.filter(|_| bad_header.is_none()) else {
        return Ok(Some(Frame::Garbage(
            bad_header.unwrap_or_else(|| "a frame without Content-Length".into()),
        )));
    };
    if length > MAX_BODY_BYTES {
        let skipped = tokio::io::copy(
            &mut (&mut *input).take(length as u64),
            &mut tokio::io::sink(),
        )
        .await?;
        if skipped < length as u64 {
            return Ok(None);
        }
        return Ok(Some(Frame::Garbage(format!(
            "a {length}-byte frame, over the {MAX_BODY_BYTES}-byte limit"
        ))));
    }
    let mut body = vec![0; length];
    match input.read_exact(&mut body).await {
        Ok(_) => Ok(Some(Frame::Body(body))),
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(err) => Err(err),
    }
}

/// The body to pass on (the frame, repaired, or nothing) and what was
/// wrong with it.
fn check(body: Vec<u8>) -> (Option<Vec<u8>>, Option<Damaged>) {
    let utf8_error = match std::str::from_utf8(&body) {
        Ok(text) => match serde_json::from_str::<Value>(text) {
            Ok(mut value) if text.contains("u0000") && holds_nul(&value) && !keystrokes(&value) => {
                // No hub takes U+0000 (PostgreSQL cannot store it): the
                // change goes on with U+FFFD in its place, and the resync
                // that follows brings the buffer to that.
                replace_nul(&mut value);
                let repaired = value.to_string();
                let reason = "holds U+0000 (NUL), which Chorus does not share".to_owned();
                return pass_repaired(repaired, &value, reason);
            }
            Ok(_) => return (Some(body), None),
            Err(err) => {
                let reason = format!("not JSON: {err}");
                let repaired = repair_surrogates(text);
                let value = repaired.as_deref().map(serde_json::from_str::<Value>);
                let Some(Ok(value)) = value else {
                    let damaged = Damaged {
                        reason,
                        ..Damaged::default()
                    };
                    return (None, Some(damaged));
                };
                return pass_repaired(repaired.unwrap_or_default(), &value, reason);
            }
        },
        Err(err) => err,
    };
    let repaired = String::from_utf8_lossy(&body).into_owned();
    let Ok(value) = serde_json::from_str::<Value>(&repaired) else {
        let damaged = Damaged {
            reason: format!("not UTF-8 ({utf8_error}) and not JSON"),
            ..Damaged::default()
        };
        return (None, Some(damaged));
    };
    pass_repaired(repaired, &value, format!("not UTF-8: {utf8_error}"))
}

/// Whether `value` is `chorus.terminal.input`, whose keystrokes may hold
/// U+0000 (Ctrl-Space): they go to a terminal, not into a document, and
/// the hub takes them.
fn keystrokes(value: &Value) -> bool {
    value["method"] == "workspace/executeCommand"
        && value["params"]["command"] == crate::lsp_ext::TERMINAL_INPUT
}

/// Every U+0000 in `value`'s strings becomes U+FFFD.
fn replace_nul(value: &mut Value) {
    match value {
        Value::String(text) if text.contains('\0') => *text = text.replace('\0', "\u{fffd}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(fields) => fields.values_mut().for_each(replace_nul),
        _ => {}
    }
}

/// A repaired frame goes on, except a `didOpen` (see the module docs).
fn pass_repaired(
    repaired: String,
    value: &Value,
    reason: String,
) -> (Option<Vec<u8>>, Option<Damaged>) {
    let mut damaged = describe(value);
    damaged.reason = reason;
    if damaged.method.as_deref() == Some("textDocument/didOpen") {
        return (None, Some(damaged));
    }
    damaged.repaired = true;
    (Some(repaired.into_bytes()), Some(damaged))
}

/// `text` with every `\u` escape of an unpaired UTF-16 surrogate (what a
/// JavaScript string may hold, and JSON parsers refuse) turned into
/// `\ufffd`; `None` if there was none.
fn repair_surrogates(text: &str) -> Option<String> {
    fn escape_at(bytes: &[u8], i: usize) -> Option<u16> {
        let hex = bytes.get(i + 2..i + 6)?;
        (bytes[i] == b'\\' && bytes[i + 1] == b'u')
            .then(|| u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())
            .flatten()
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(bytes, i) else {
            i += 2; // any other escape, `\\` included
            continue;
        };
        let high = (0xd800..0xdc00).contains(&unit);
        let low = (0xdc00..0xe000).contains(&unit);
        let paired = high && escape_at(bytes, i + 6).is_some_and(|u| (0xdc00..0xe000).contains(&u));
        if paired {
            i += 12;
        } else if high || low {
            out.push_str(&text[copied..i]);
            out.push_str("\\ufffd");
            i += 6;
            copied = i;
            changed = true;
        } else {
            i += 6;
        }
    }
    out.push_str(&text[copied..]);
    changed.then_some(out)
}

fn describe(value: &Value) -> Damaged {
    Damaged {
        method: value["method"].as_str().map(str::to_owned),
        uri: value["params"]["textDocument"]["uri"]
            .as_str()
            .map(str::to_owned),
        ..Damaged::default()
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(output: &mut W, body: &[u8]) -> std::io::Result<()> {
    output
        .write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes())
        .await?;
    output.write_all(body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Runs the guard over `input` and returns the bodies it passed on.
    async fn guarded(input: Vec<u8>) -> Vec<Value> {
        let mut output = Vec::new();
        guard(&input[..], &mut output).await;
        let mut bodies = Vec::new();
        let mut rest = &output[..];
        while !rest.is_empty() {
            let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let header = std::str::from_utf8(&rest[..end]).unwrap();
            let length: usize = header
                .strip_prefix("Content-Length: ")
                .unwrap()
                .parse()
                .unwrap();
            let body = &rest[end + 4..end + 4 + length];
            bodies.push(serde_json::from_slice(body).unwrap());
            rest = &rest[end + 4 + length..];
        }
        bodies
    }

    const CHANGE: &[u8] = br#"{"jsonrpc":"2.0","method":"textDocument/didChange","params":{"textDocument":{"uri":"file:///w/a.py","version":3},"contentChanges":[{"text":"aXb"}]}}"#;

    #[tokio::test]
    async fn sound_frames_pass_byte_for_byte() {
        let mut input = frame(CHANGE);
        input.extend(frame(br#"{"jsonrpc":"2.0","id":2,"method":"shutdown"}"#));
        let mut output = Vec::new();
        guard(&input[..], &mut output).await;
        assert_eq!(output, input);
    }

    #[tokio::test]
    async fn a_change_that_is_not_utf8_is_repaired_and_announced() {
        let bad = String::from_utf8_lossy(CHANGE)
            .replace("aXb", "a\u{0}b")
            .into_bytes();
        let bad: Vec<u8> = bad
            .into_iter()
            .map(|b| if b == 0 { 0xff } else { b })
            .collect();
        let mut input = frame(&bad);
        input.extend(frame(br#"{"jsonrpc":"2.0","id":2,"method":"shutdown"}"#));
        let bodies = guarded(input).await;
        assert_eq!(bodies.len(), 3, "{bodies:?}");
        assert_eq!(
            bodies[0]["params"]["contentChanges"][0]["text"],
            "a\u{fffd}b"
        );
        assert_eq!(bodies[1]["method"], DAMAGED_METHOD);
        assert_eq!(bodies[1]["params"]["uri"], "file:///w/a.py");
        assert_eq!(bodies[1]["params"]["method"], "textDocument/didChange");
        assert_eq!(bodies[1]["params"]["repaired"], true);
        // ...and the editor's next message still gets through.
        assert_eq!(bodies[2]["method"], "shutdown");
    }

    /// Issue 17: no hub takes U+0000 (PostgreSQL cannot store it); a
    /// change holding one goes on with U+FFFD, announced for a resync.
    #[tokio::test]
    async fn a_change_holding_nul_is_repaired_and_announced() {
        let with_nul = String::from_utf8_lossy(CHANGE).replace("aXb", "a\\u0000b\\\\u0000");
        let bodies = guarded(frame(with_nul.as_bytes())).await;
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        assert_eq!(
            bodies[0]["params"]["contentChanges"][0]["text"], "a\u{fffd}b\\u0000",
            "an escaped backslash before u0000 is text and stays"
        );
        assert_eq!(bodies[1]["method"], DAMAGED_METHOD);
        assert_eq!(bodies[1]["params"]["repaired"], true);
    }

    /// Ctrl-Space is U+0000: the shared terminal's keystrokes keep it.
    #[tokio::test]
    async fn terminal_keystrokes_holding_nul_pass_byte_for_byte() {
        let keys = br#"{"jsonrpc":"2.0","id":4,"method":"workspace/executeCommand","params":{"command":"chorus.terminal.input","arguments":[{"data":"\u0000"}]}}"#;
        let input = frame(keys);
        let mut output = Vec::new();
        guard(&input[..], &mut output).await;
        assert_eq!(output, input);
    }

    #[tokio::test]
    async fn an_open_that_is_not_utf8_is_not_passed_on() {
        let open = b"{\"jsonrpc\":\"2.0\",\"method\":\"textDocument/didOpen\",\"params\":{\"textDocument\":{\"uri\":\"file:///w/x.bin\",\"languageId\":\"\",\"version\":0,\"text\":\"\xff\xfe\"}}}";
        let bodies = guarded(frame(open)).await;
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        assert_eq!(bodies[0]["method"], DAMAGED_METHOD);
        assert_eq!(bodies[0]["params"]["uri"], "file:///w/x.bin");
        assert_eq!(bodies[0]["params"]["repaired"], false);
    }

    #[tokio::test]
    async fn a_lone_surrogate_and_garbage_headers_are_announced() {
        // VS Code can send half of a surrogate pair; serde_json refuses it.
        let lone = br#"{"jsonrpc":"2.0","method":"textDocument/didChange","params":{"textDocument":{"uri":"file:///w/a.ts","version":4},"contentChanges":[{"text":"\ud83d"}]}}"#;
        let mut input = frame(lone);
        input.extend(b"this is not a header\r\n\r\n");
        input.extend(frame(CHANGE));
        let bodies = guarded(input).await;
        assert_eq!(bodies.len(), 4, "{bodies:?}");
        assert_eq!(bodies[0]["params"]["contentChanges"][0]["text"], "\u{fffd}");
        assert_eq!(bodies[1]["method"], DAMAGED_METHOD);
        assert_eq!(bodies[1]["params"]["uri"], "file:///w/a.ts");
        assert!(bodies[1]["params"]["reason"]
            .as_str()
            .unwrap()
            .contains("not JSON"));
        assert_eq!(bodies[2]["method"], DAMAGED_METHOD);
        assert_eq!(bodies[2]["params"]["repaired"], false);
        assert_eq!(bodies[3]["params"]["contentChanges"][0]["text"], "aXb");
    }

    #[test]
    fn only_unpaired_surrogates_are_replaced() {
        assert_eq!(repair_surrogates(r#""\ud83d\ude00 ok""#), None);
        assert_eq!(
            repair_surrogates(r#""\\ud83d""#),
            None,
            "an escaped backslash, not an escape"
        );
        assert_eq!(
            repair_surrogates(r#""a\ud83d b \ude00 \ud83d\ude00""#).as_deref(),
            Some(r#""a\ufffd b \ufffd \ud83d\ude00""#)
        );
    }
}
