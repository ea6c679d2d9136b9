//! Every log line the session actor, its runs and its terminal write names
//! the session (`session = %…`): on a hub with hundreds of sessions, a
//! line without it cannot be told apart from the others' when an operator
//! follows one session's trouble.

use std::path::Path;

/// The session's sources: the actor and every module it is made of.
fn session_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("session.rs")];
    let mut parts: Vec<_> = std::fs::read_dir(src.join("session"))
        .expect("src/session/")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    parts.sort();
    files.extend(parts);
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a source file");
            (path.display().to_string(), text)
        })
        .collect()
}

/// The text of each `info!(…)`-like call in `source`, with its line.
fn log_calls(source: &str) -> Vec<(usize, String)> {
    let mut calls = Vec::new();
    for level in ["trace!(", "debug!(", "info!(", "warn!(", "error!("] {
        let mut from = 0;
        while let Some(at) = source[from..].find(level).map(|i| i + from) {
            from = at + level.len();
            // `tracing::info!(` or `info!(`, not `something_info!(`.
            let before = source[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
            if source[line_start..at].trim_start().starts_with("//") {
                continue;
            }
            let end = call_end(&source[from..]).map_or(source.len(), |len| from + len);
            let line = source[..at].matches('\n').count() + 1;
            calls.push((line, source[at..end].to_owned()));
        }
    }
    calls
}

/// Where the parenthesis opened just before `rest` closes, skipping string
/// literals (a message may hold a parenthesis of its own).
fn call_end(rest: &str) -> Option<usize> {
    let mut depth = 1;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (true, '"') => in_string = false,
            (true, _) => {}
            (false, '"') => in_string = true,
            (false, '(') => depth += 1,
            (false, ')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            (false, _) => {}
        }
    }
    None
}

#[test]
fn every_session_log_line_names_its_session() {
    let mut missing = Vec::new();
    let mut seen = 0;
    for (path, source) in session_sources() {
        for (line, call) in log_calls(&source) {
            seen += 1;
            if !call.contains("session = %") {
                missing.push(format!("{path}:{line}: {call}"));
            }
        }
    }
    assert!(
        seen > 20,
        "found only {seen} log calls: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "log lines without `session = %…`:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scan_finds_calls_and_skips_comments_and_lookalikes() {
    let source = r#"
        info!(session = %self.id, "opened (idle)");
        // warn!("a comment");
        my_info!("not tracing");
        tracing::error!(
            cause = %err,
            "no session here"
        );
    "#;
    let calls = log_calls(source);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let (line, error) = calls.iter().find(|(_, c)| c.starts_with("error!")).unwrap();
    assert_eq!(*line, 5);
    assert!(error.ends_with("\"no session here\"\n        )"), "{error}");
    assert!(calls
        .iter()
        .any(|(_, c)| c == "info!(session = %self.id, \"opened (idle)\")"));
}
