//! `editor-plugins/fixtures/lsp_ext.json`: one example of every message in
//! [`super`], with every optional field present, made from the Rust types;
//! the plugins' tests read it to check their mirrors of these types.
//!
//! Each payload in the file is `{direction, example, optional}`, where
//! `optional` lists the paths (`participant.editor`, `[1].stdin`,
//! `selections[].head`) a receiver must accept missing or `null`. It is not
//! written by hand: a path is optional when the Rust side still accepts the
//! example with that field removed (an argument list truncated there).
//!
//! The test fails when the committed file differs from what the types give;
//! `UPDATE_FIXTURES=1 cargo test -p chorus-lsp lsp_ext` rewrites it.

use std::path::PathBuf;
use std::str::FromStr;

use chorus_protocol::wire::{
    NotSynced, OutputStream, Participant, Role, RunDiagnostic, RunDiagnosticSeverity, RunMode,
    RunResult,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tower_lsp_server::ls_types::notification::Notification;
use tower_lsp_server::ls_types::request::Request;
use tower_lsp_server::ls_types::{Position, Uri};

use super::*;

const PROXY_TO_EDITOR: &str = "proxyToEditor";
const EDITOR_TO_PROXY: &str = "editorToProxy";

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../editor-plugins/fixtures/lsp_ext.json")
}

fn uri() -> Uri {
    Uri::from_str("file:///home/ada/project/main.py").expect("a valid URI")
}

fn selection() -> SelectionParam {
    SelectionParam {
        anchor: Position {
            line: 2,
            character: 4,
        },
        head: Position {
            line: 3,
            character: 0,
        },
    }
}

fn run_options() -> RunOptions {
    RunOptions {
        stdin: Some("42\n".into()),
        stdin_eof: Some(false),
        args: Some(vec!["--verbose".into()]),
        language: Some("python".into()),
        mode: Some(RunMode::Test),
        command: Some("python3 -m unittest".into()),
    }
}

/// Every path in `example` under which a field could be removed: object
/// keys at any depth, the first element of nested arrays (`[]`), and each
/// element of a top-level array (positional command arguments).
fn paths(value: &Value, prefix: &str, top: bool, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                out.push(path.clone());
                paths(field, &path, false, out);
            }
        }
        Value::Array(items) if top => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("[{i}]");
                out.push(path.clone());
                paths(item, &path, false, out);
            }
        }
        Value::Array(items) => {
            if let Some(first) = items.first() {
                paths(first, &format!("{prefix}[]"), false, out);
            }
        }
        _ => {}
    }
}

/// `example` without the field at `path` (the top-level list cut there).
fn without(example: &Value, path: &str) -> Value {
    let mut copy = example.clone();
    let mut cursor = &mut copy;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let (key, index) = match segment.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        if !key.is_empty() {
            if last && !segment.contains('[') {
                cursor
                    .as_object_mut()
                    .expect("paths lead through objects")
                    .remove(key);
                return copy;
            }
            cursor = cursor.get_mut(key).expect("paths name existing fields");
        }
        if segment.contains('[') {
            let items = cursor.as_array_mut().expect("[] follows a list");
            if last {
                items.truncate(index.expect("only top-level elements are removed"));
                return copy;
            }
            cursor = items.get_mut(index.unwrap_or(0)).expect("a non-empty list");
        }
    }
    copy
}

/// `{direction, example, optional}` for `example`, whose receiver is
/// `accepts`.
fn payload_with(direction: &str, example: Value, accepts: impl Fn(&Value) -> bool) -> Value {
    assert!(
        accepts(&example),
        "the receiver rejects its own example {example}"
    );
    let mut all = Vec::new();
    paths(&example, "", true, &mut all);
    let mut optional: Vec<String> = all
        .into_iter()
        .filter(|path| accepts(&without(&example, path)))
        .collect();
    optional.sort();
    json!({"direction": direction, "example": example, "optional": optional})
}

/// A payload of a serde type, which must read back as itself.
fn payload<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    direction: &str,
    example: T,
) -> Value {
    let value = serde_json::to_value(&example).expect("serializable");
    let back: T = serde_json::from_value(value.clone()).expect("reads back");
    assert_eq!(back, example, "{value} does not read back as itself");
    payload_with(direction, value, |v| {
        serde_json::from_value::<T>(v.clone()).is_ok()
    })
}

fn notification<N: Notification>(direction: &str, params: N::Params) -> Value
where
    N::Params: PartialEq + std::fmt::Debug,
{
    json!({"method": N::METHOD, "params": payload(direction, params)})
}

fn request<R: Request>(params: R::Params, result: R::Result) -> Value
where
    R::Params: PartialEq + std::fmt::Debug,
    R::Result: PartialEq + std::fmt::Debug,
{
    json!({
        "method": R::METHOD,
        "params": payload(EDITOR_TO_PROXY, params),
        "result": payload(PROXY_TO_EDITOR, result),
    })
}

/// Every value of the enums the messages carry. The `match`es stop
/// compiling when a variant is added, as a reminder to list it.
fn enums() -> Value {
    let states = [
        ConnectionState::Online,
        ConnectionState::Offline,
        ConnectionState::Refused,
    ];
    for state in states {
        match state {
            ConnectionState::Online | ConnectionState::Offline | ConnectionState::Refused => {}
        }
    }
    let roles = [Role::Editor, Role::ReadOnly];
    for role in roles {
        match role {
            Role::Editor | Role::ReadOnly => {}
        }
    }
    let streams = [OutputStream::Stdout, OutputStream::Stderr];
    for stream in streams {
        match stream {
            OutputStream::Stdout | OutputStream::Stderr => {}
        }
    }
    let modes = [RunMode::Run, RunMode::Test, RunMode::Release];
    for mode in modes {
        match mode {
            RunMode::Run | RunMode::Test | RunMode::Release => {}
        }
    }
    let severities = [RunDiagnosticSeverity::Error, RunDiagnosticSeverity::Warning];
    for severity in severities {
        match severity {
            RunDiagnosticSeverity::Error | RunDiagnosticSeverity::Warning => {}
        }
    }
    let not_synced = [
        NotSynced::Binary,
        NotSynced::TooLarge,
        NotSynced::SessionFull,
    ];
    for reason in not_synced {
        match reason {
            NotSynced::Binary | NotSynced::TooLarge | NotSynced::SessionFull => {}
        }
    }
    json!({
        "connectionState": states,
        "role": roles,
        "outputStream": streams,
        "notSynced": not_synced,
        "runMode": modes,
        "runDiagnosticSeverity": severities,
    })
}

fn fixture() -> Value {
    let notifications = json!({
        "connection": notification::<Connection>(PROXY_TO_EDITOR, ConnectionParams {
            state: ConnectionState::Online,
            session: "demo".into(),
            role: Some(Role::ReadOnly),
            client_id: Some(7),
            reason: Some("connection lost".into()),
        }),
        "presenceJoined": notification::<Presence>(PROXY_TO_EDITOR, PresenceParams::Joined {
            participant: Participant {
                client_id: 3,
                name: "Bo".into(),
                editor: Some("Neovim".into()),
            },
        }),
        "presenceLeft": notification::<Presence>(PROXY_TO_EDITOR, PresenceParams::Left {
            client_id: 3,
            name: "Bo".into(),
        }),
        "remoteCursor": notification::<RemoteCursor>(PROXY_TO_EDITOR, RemoteCursorParams {
            client_id: 3,
            name: "Bo".into(),
            uri: uri(),
            selections: vec![selection()],
        }),
        "localCursor": notification::<LocalCursor>(EDITOR_TO_PROXY, LocalCursorParams {
            uri: uri(),
            selections: vec![selection()],
        }),
        "runStarted": notification::<RunStarted>(PROXY_TO_EDITOR, RunStartedParams {
            run_id: 1,
            name: "Ada".into(),
            doc: "main.py".into(),
            plan: Some("python3 main.py (main.py)".into()),
        }),
        "runOutput": notification::<RunOutput>(PROXY_TO_EDITOR, RunOutputParams {
            run_id: 1,
            seq: 0,
            stream: OutputStream::Stderr,
            data: "Traceback (most recent call last):\n".into(),
        }),
        "runInput": notification::<RunInput>(PROXY_TO_EDITOR, RunInputParams {
            run_id: 1,
            client_id: 3,
            name: "Bo".into(),
            text: Some("Ada\n".into()),
            eof: true,
            interrupt: true,
        }),
        "runFinished": notification::<RunFinished>(PROXY_TO_EDITOR, RunFinishedParams {
            run_id: 1,
            result: RunResult {
                exit_code: Some(1),
                timed_out: false,
                oom_killed: false,
                truncated: false,
                cancelled: false,
                duration_ms: 120,
                error: Some("no language for `x`".into()),
                diagnostics: vec![RunDiagnostic {
                    path: "helper.py".into(),
                    line: 3,
                    column: 1,
                    severity: RunDiagnosticSeverity::Error,
                    message: "NameError: name 'undefined_name' is not defined".into(),
                }],
            },
            summary: "exited with code 1 in 0.12 s; error at helper.py:3:1".into(),
        }),
        "terminalStarted": notification::<TerminalStarted>(PROXY_TO_EDITOR, TerminalStartedParams {
            terminal_id: 1,
            client_id: 3,
            name: "Bo".into(),
            cols: 100,
            rows: 30,
        }),
        "terminalOutput": notification::<TerminalOutput>(PROXY_TO_EDITOR, TerminalOutputParams {
            terminal_id: 1,
            seq: 4,
            data: "\u{1b}[01;32mbo@chorus\u{1b}[00m:~$ ".into(),
            replay: true,
        }),
        "terminalResized": notification::<TerminalResized>(PROXY_TO_EDITOR, TerminalResizedParams {
            terminal_id: 1,
            client_id: 3,
            cols: 120,
            rows: 40,
        }),
        "terminalEnded": notification::<TerminalEnded>(PROXY_TO_EDITOR, TerminalEndedParams {
            terminal_id: 1,
            reason: "stopped by Bo".into(),
        }),
    });
    let requests = json!({
        "documentState": request::<DocumentState>(
            DocumentStateParams { uri: uri() },
            Some(DocumentStateResult {
                text: "print('hi')\n".into(),
                rev: 12,
                synchronized: true,
                joined: true,
                version: 7,
            }),
        ),
    });
    let run = RunArguments {
        uri: Some(uri()),
        options: Some(run_options()),
    };
    assert_eq!(
        RunArguments::from_arguments(&run.clone().into_arguments()),
        Ok(run.clone())
    );
    let input = InputArguments {
        text: Some("Ada\n".into()),
        eof: true,
        interrupt: true,
    };
    assert_eq!(
        InputArguments::from_arguments(&input.clone().into_arguments()),
        Ok(input.clone())
    );
    let follow = FollowArguments {
        name: Some("Bo".into()),
    };
    assert_eq!(
        FollowArguments::from_arguments(&follow.clone().into_arguments()),
        Ok(follow.clone())
    );
    let resync = ResyncArguments { uri: Some(uri()) };
    assert_eq!(
        ResyncArguments::from_arguments(&resync.clone().into_arguments()),
        Ok(resync.clone())
    );
    let terminal = TerminalArguments {
        cols: Some(100),
        rows: Some(30),
    };
    assert_eq!(
        TerminalArguments::from_arguments(&terminal.into_arguments()),
        Ok(terminal)
    );
    let terminal_input = TerminalInputArguments {
        data: "ls\r".into(),
    };
    assert_eq!(
        TerminalInputArguments::from_arguments(&terminal_input.clone().into_arguments()),
        Ok(terminal_input.clone())
    );
    let terminal_resize = TerminalResizeArguments {
        cols: 120,
        rows: 40,
    };
    assert_eq!(
        TerminalResizeArguments::from_arguments(&terminal_resize.into_arguments()),
        Ok(terminal_resize)
    );
    let null_result = || payload_with(PROXY_TO_EDITOR, Value::Null, Value::is_null);
    let commands = json!({
        "run": {
            "command": RUN,
            "arguments": payload_with(EDITOR_TO_PROXY, Value::from(run.into_arguments()), |v| {
                v.as_array()
                    .is_some_and(|list| RunArguments::from_arguments(list).is_ok())
            }),
            "result": payload(PROXY_TO_EDITOR, Requested { requested: "main.py".into() }),
        },
        "stop": {
            "command": STOP,
            "arguments": payload_with(EDITOR_TO_PROXY, json!([]), |v| v == &json!([])),
            "result": payload(PROXY_TO_EDITOR, Requested { requested: "stop".into() }),
        },
        "input": {
            "command": INPUT,
            "arguments": payload_with(EDITOR_TO_PROXY, Value::from(input.into_arguments()), |v| {
                v.as_array()
                    .is_some_and(|list| InputArguments::from_arguments(list).is_ok())
            }),
            "result": payload(PROXY_TO_EDITOR, Requested { requested: "input".into() }),
        },
        "follow": {
            "command": FOLLOW,
            "arguments": payload_with(EDITOR_TO_PROXY, Value::from(follow.into_arguments()), |v| {
                v.as_array()
                    .is_some_and(|list| FollowArguments::from_arguments(list).is_ok())
            }),
            "result": payload(PROXY_TO_EDITOR, Following { following: Some("Bo".into()) }),
        },
        "share": {
            "command": SHARE,
            "arguments": payload_with(EDITOR_TO_PROXY, json!([]), |v| v == &json!([])),
            "result": payload(PROXY_TO_EDITOR, Requested { requested: "share".into() }),
        },
        "resync": {
            "command": RESYNC,
            "arguments": payload_with(EDITOR_TO_PROXY, Value::from(resync.into_arguments()), |v| {
                v.as_array()
                    .is_some_and(|list| ResyncArguments::from_arguments(list).is_ok())
            }),
            "result": payload(PROXY_TO_EDITOR, Requested { requested: "main.py".into() }),
        },
        "files": {
            "command": FILES,
            "arguments": payload_with(EDITOR_TO_PROXY, json!([]), |v| v == &json!([])),
            "result": payload(PROXY_TO_EDITOR, Files {
                files: vec![SessionFile {
                    path: "logo.png".into(),
                    uri: Some(Uri::from_str("file:///home/ada/project/logo.png").expect("a valid URI")),
                    size: 2048,
                    not_synced: Some(NotSynced::Binary),
                }],
            }),
        },
        "terminal": {
            "command": TERMINAL,
            "arguments": payload_with(EDITOR_TO_PROXY, Value::from(terminal.into_arguments()), |v| {
                v.as_array()
                    .is_some_and(|list| TerminalArguments::from_arguments(list).is_ok())
            }),
            "result": null_result(),
        },
        "terminalInput": {
            "command": TERMINAL_INPUT,
            "arguments": payload_with(EDITOR_TO_PROXY, Value::from(terminal_input.into_arguments()), |v| {
                v.as_array()
                    .is_some_and(|list| TerminalInputArguments::from_arguments(list).is_ok())
            }),
            "result": null_result(),
        },
        "terminalResize": {
            "command": TERMINAL_RESIZE,
            "arguments": payload_with(EDITOR_TO_PROXY, Value::from(terminal_resize.into_arguments()), |v| {
                v.as_array()
                    .is_some_and(|list| TerminalResizeArguments::from_arguments(list).is_ok())
            }),
            "result": null_result(),
        },
        "terminalStop": {
            "command": TERMINAL_STOP,
            "arguments": payload_with(EDITOR_TO_PROXY, json!([]), |v| v == &json!([])),
            "result": null_result(),
        },
    });
    let settings = Settings {
        hub: Some("wss://hub.example:7420/".into()),
        session: Some("demo".into()),
        name: Some("Ada".into()),
        token: Some("chj_example".into()),
        hub_ca: Some("/etc/chorus/ca.pem".into()),
        extensions: Some(true),
        sync_files: Some(true),
    };
    // Every command the proxy declares has its example here.
    let mut named: Vec<&str> = commands
        .as_object()
        .into_iter()
        .flat_map(|all| all.values())
        .filter_map(|command| command["command"].as_str())
        .collect();
    named.sort_unstable();
    let mut declared = COMMANDS.to_vec();
    declared.sort_unstable();
    assert_eq!(named, declared, "a command without its example");
    json!({
        "generatedBy": "lsp-proxy/src/lsp_ext/fixture.rs from lsp-proxy/src/lsp_ext.rs; `UPDATE_FIXTURES=1 cargo test -p chorus-lsp lsp_ext` rewrites it",
        "initializationOptions": payload(EDITOR_TO_PROXY, settings),
        "notifications": notifications,
        "requests": requests,
        "commands": commands,
        "enums": enums(),
    })
}

/// `value` with every object's keys in order, whether or not some crate in
/// the build turned on serde_json's `preserve_order`.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(fields.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[test]
fn fixture_is_current() {
    let mut text = serde_json::to_string_pretty(&sorted(fixture())).expect("serializable");
    text.push('\n');
    let path = fixture_path();
    if std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::create_dir_all(path.parent().expect("a file in a directory"))
            .expect("create editor-plugins/fixtures");
        std::fs::write(&path, &text).expect("write the fixture");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is not what lsp_ext.rs gives; if the change is meant, run \
         `UPDATE_FIXTURES=1 cargo test -p chorus-lsp lsp_ext` and update the plugins. Expected:\n{text}",
        path.display()
    );
}

#[test]
fn optional_paths_follow_the_types() {
    let fixture = fixture();
    let optional = |pointer: &str| fixture.pointer(pointer).cloned().expect(pointer);
    assert_eq!(
        optional("/notifications/connection/params/optional"),
        json!(["clientId", "reason", "role"])
    );
    assert_eq!(
        optional("/notifications/presenceJoined/params/optional"),
        json!(["participant.editor"])
    );
    assert_eq!(
        optional("/notifications/remoteCursor/params/optional"),
        json!([])
    );
    assert_eq!(
        optional("/commands/run/arguments/optional"),
        json!([
            "[0]",
            "[1]",
            "[1].args",
            "[1].command",
            "[1].language",
            "[1].mode",
            "[1].stdin",
            "[1].stdinEof"
        ])
    );
    assert_eq!(
        optional("/notifications/runInput/params/optional"),
        json!(["eof", "interrupt", "text"])
    );
    assert_eq!(
        optional("/commands/input/arguments/optional"),
        json!(["[0].eof", "[0].interrupt", "[0].text"])
    );
    assert_eq!(
        optional("/notifications/runStarted/params/optional"),
        json!(["plan"])
    );
    assert_eq!(
        optional("/notifications/runFinished/params/optional"),
        json!(["result.diagnostics", "result.error", "result.exitCode"])
    );
    assert_eq!(
        optional("/commands/follow/arguments/optional"),
        json!(["[0]"])
    );
    assert_eq!(
        optional("/notifications/terminalOutput/params/optional"),
        json!(["replay"])
    );
    assert_eq!(
        optional("/notifications/terminalStarted/params/optional"),
        json!([])
    );
    assert_eq!(
        optional("/commands/terminal/arguments/optional"),
        json!(["[0]", "[0].cols", "[0].rows"])
    );
    assert_eq!(
        optional("/commands/terminalResize/arguments/optional"),
        json!([])
    );
    assert_eq!(
        optional("/commands/terminalInput/arguments/optional"),
        json!([])
    );
    assert_eq!(
        optional("/commands/files/result/optional"),
        json!(["files[].notSynced", "files[].uri"])
    );
}
