//! Waiting until everyone agrees: every editor's buffer, every proxy's
//! mirror and the hub's authoritative text are equal, and no proxy has
//! anything in flight.
//!
//! Polling with a generous deadline, never a fixed sleep: how long
//! convergence takes is not what these tests measure.

use std::time::Duration;

use serde_json::Value;

use super::editor::Editor;
use super::hub::Hub;
use super::hub_client::hub_text_with_token;

/// How long a quiet session may take to agree before the test fails.
pub const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(20);

/// Polling interval: short enough to keep tests quick, long enough not to
/// flood the proxies with `chorus/documentState` requests.
const POLL: Duration = Duration::from_millis(50);

/// Waits until all `editors` agree on `doc` with each other, with their
/// proxies and with the hub; returns the agreed text. On timeout returns a
/// report of every party's state, the differences and the log tails.
pub async fn wait_converged(
    hub: &Hub,
    session: &str,
    doc: &str,
    editors: &[&Editor],
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + CONVERGENCE_DEADLINE;
    let mut last_problem;
    loop {
        match check_once(hub, session, doc, editors).await {
            Ok(text) => {
                let violations: Vec<String> = editors
                    .iter()
                    .flat_map(|e| {
                        e.violations()
                            .into_iter()
                            .map(|v| format!("{}: {v}", e.name))
                    })
                    .collect();
                if !violations.is_empty() {
                    return Err(format!(
                        "converged, but the proxies made editors see protocol violations:\n{}\n{}",
                        violations.join("\n"),
                        report(hub, session, doc, editors).await
                    ));
                }
                return Ok(text);
            }
            Err(problem) => last_problem = problem,
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "no convergence on {doc:?} within {CONVERGENCE_DEADLINE:?}.\nLast problem: {last_problem}\n{}",
                report(hub, session, doc, editors).await
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`wait_converged`] but panics with the report.
pub async fn assert_converged(hub: &Hub, session: &str, doc: &str, editors: &[&Editor]) -> String {
    match wait_converged(hub, session, doc, editors).await {
        Ok(text) => text,
        Err(report) => panic!("{report}"),
    }
}

/// Waits until `editor`'s proxy mirrors its buffer of `doc` (whether or not
/// it is synchronized with the hub): the proxy has read every change the
/// editor sent so far.
pub async fn wait_for_mirror(editor: &Editor, doc: &str) {
    let deadline = tokio::time::Instant::now() + CONVERGENCE_DEADLINE;
    loop {
        let buffer = editor.text(doc);
        let state = editor.document_state(doc).await;
        let mirror = state
            .as_ref()
            .ok()
            .and_then(|state| state.get("text"))
            .and_then(Value::as_str);
        if mirror.is_some() && mirror == buffer.as_deref() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}'s proxy never mirrored its buffer: {state:?}\n{}",
            editor.name,
            editor.describe(doc)
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn check_once(
    hub: &Hub,
    session: &str,
    doc: &str,
    editors: &[&Editor],
) -> Result<String, String> {
    let first = editors.first().ok_or("no editors")?;
    let text = first
        .text(doc)
        .ok_or_else(|| format!("{} has {doc} closed", first.name))?;
    for editor in editors {
        if editor.held_count() > 0 || editor.is_holding() {
            return Err(format!("{} is still holding edits", editor.name));
        }
        let buffer = editor
            .text(doc)
            .ok_or_else(|| format!("{} has {doc} closed", editor.name))?;
        if buffer != text {
            return Err(format!(
                "{} and {} differ: {}",
                first.name,
                editor.name,
                first_difference(&text, &buffer)
            ));
        }
    }
    for editor in editors {
        let state = editor.document_state(doc).await?;
        let (mirror, synchronized) = parse_document_state(&state)?;
        if !synchronized {
            return Err(format!(
                "{}'s proxy is not synchronized: {state}",
                editor.name
            ));
        }
        if mirror != text {
            return Err(format!(
                "{}'s proxy mirror differs from its buffer: {}",
                editor.name,
                first_difference(&text, &mirror)
            ));
        }
    }
    let (_, authoritative) =
        hub_text_with_token(&hub.url, session, doc, hub.token.as_deref()).await?;
    if authoritative != text {
        return Err(format!(
            "the hub differs from the editors: {}",
            first_difference(&authoritative, &text)
        ));
    }
    Ok(text)
}

fn parse_document_state(state: &Value) -> Result<(String, bool), String> {
    let text = state
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("chorus/documentState without text: {state}"))?;
    let synchronized = state
        .get("synchronized")
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("chorus/documentState without synchronized: {state}"))?;
    Ok((text.to_owned(), synchronized))
}

/// Everything known about `doc`, for a failure message.
pub async fn report(hub: &Hub, session: &str, doc: &str, editors: &[&Editor]) -> String {
    let mut out = String::new();
    let hub_view = hub_text_with_token(&hub.url, session, doc, hub.token.as_deref()).await;
    match &hub_view {
        Ok((rev, text)) => out.push_str(&format!("hub: rev {rev} text {text:?}\n")),
        Err(err) => out.push_str(&format!("hub: {err}\n")),
    }
    for editor in editors {
        out.push_str(&editor.describe(doc));
        out.push('\n');
        match editor.document_state(doc).await {
            Ok(state) => out.push_str(&format!("  proxy: {state}\n")),
            Err(err) => out.push_str(&format!("  proxy: {err}\n")),
        }
        if let (Ok((_, hub_text)), Some(buffer)) = (&hub_view, editor.text(doc)) {
            if *hub_text != buffer {
                out.push_str(&format!(
                    "  vs hub: {}\n",
                    first_difference(hub_text, &buffer)
                ));
            }
        }
    }
    out.push_str(&format!(
        "--- hub log ({}) ---\n{}\n",
        hub.log_path.display(),
        hub.log_tail(30)
    ));
    for editor in editors {
        out.push_str(&format!(
            "--- {} proxy log ({}) ---\n{}\n",
            editor.name,
            editor.client().log_path.display(),
            editor.client().log_tail(30)
        ));
    }
    out
}

/// Where two texts first differ, with a little context on each side.
pub fn first_difference(expected: &str, actual: &str) -> String {
    let a: Vec<char> = expected.chars().collect();
    let b: Vec<char> = actual.chars().collect();
    let at = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if at == a.len() && at == b.len() {
        return "identical".into();
    }
    let context = |text: &[char]| {
        let from = at.saturating_sub(12);
        let to = (at + 24).min(text.len());
        String::from_iter(&text[from..to])
    };
    format!(
        "first difference at char {at} (lengths {} vs {}): {:?} vs {:?}",
        a.len(),
        b.len(),
        context(&a),
        context(&b)
    )
}
