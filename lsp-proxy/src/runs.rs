//! Showing a session's runs in the editor through standard LSP alone, plus
//! `chorus/run*` notifications for plugins that draw richer views.
//!
//! * every output line → `window/logMessage`, prefixed `[run N · who]`
//!   (VS Code: Output channel; Neovim/Helix: their LSP log), and so is
//!   everyone's input, `[run N · who] > text  (from NAME)`;
//! * `$/progress` begin/end while it runs (when the editor supports it);
//! * the result → `window/showMessage` (toast, `:messages`, status line);
//! * the errors the hub found in its output, each on its file and line →
//!   `textDocument/publishDiagnostics`, source `chorus run`.
//!
//! Invariant: every participant's editor shows the same run's diagnostics:
//! those of the last run that finished, cleared when the next one starts
//! (whoever started either), and replaced whole when it finishes.

use std::collections::{BTreeMap, HashMap};

use chorus_protocol::text::{to_pos, Encoding, LinePos};
use chorus_protocol::wire::{OutputStream, RunDiagnostic, RunDiagnosticSeverity, RunResult};
use ropey::Rope;
use tower_lsp_server::ls_types::{
    Diagnostic, DiagnosticSeverity, MessageType, NumberOrString, Range, Uri, WorkDoneProgress,
    WorkDoneProgressBegin, WorkDoneProgressEnd,
};

use crate::documents::{lsp_pos, Documents};
use crate::lsp_ext::{
    RunFinished, RunFinishedParams, RunInput, RunInputParams, RunOutput, RunOutputParams,
    RunStarted, RunStartedParams,
};
use crate::notifier::{Layer, Notifier};

/// The `source` of a run's diagnostics, which editors show beside them.
pub const DIAGNOSTIC_SOURCE: &str = "chorus run";

struct RunView {
    label: String,
    doc: String,
    /// Output cut into whole lines, per stream.
    partial: HashMap<&'static str, Lines>,
    progress: Option<NumberOrString>,
}

/// The runs this editor has heard of, by id.
pub struct Runs {
    notifier: Notifier,
    work_done_progress: bool,
    views: HashMap<u64, RunView>,
    /// The URIs given run diagnostics, to clear when the next run starts.
    diagnosed: Vec<Uri>,
}

impl Runs {
    pub fn new(notifier: Notifier) -> Self {
        Runs {
            notifier,
            work_done_progress: false,
            views: HashMap::new(),
            diagnosed: Vec::new(),
        }
    }

    /// Whether a run this proxy heard start has not finished yet.
    pub fn is_going(&self) -> bool {
        !self.views.is_empty()
    }

    pub fn set_progress_support(&mut self, supported: bool) {
        self.work_done_progress = supported;
    }

    /// `plan` is empty from hubs that do not say what they run.
    pub fn started(&mut self, run_id: u64, name: &str, doc: &str, plan: &str) {
        // The last run's errors describe text that may be fixed by now.
        for uri in std::mem::take(&mut self.diagnosed) {
            self.notifier.diagnostics(uri, Layer::Run, Vec::new());
        }
        let label = format!("run {run_id} · {name}");
        let progress = self
            .work_done_progress
            .then(|| self.begin_progress(run_id, name, doc, plan));
        let how = if plan.is_empty() {
            String::new()
        } else {
            format!(": {plan}")
        };
        self.log(format!("[{label}] started {doc}{how}"));
        self.notifier.notify::<RunStarted>(RunStartedParams {
            run_id,
            name: name.to_owned(),
            doc: doc.to_owned(),
            plan: (!plan.is_empty()).then(|| plan.to_owned()),
        });
        self.views.insert(
            run_id,
            RunView {
                label,
                doc: doc.to_owned(),
                partial: HashMap::new(),
                progress,
            },
        );
    }

    pub fn output(&mut self, run_id: u64, seq: u64, stream: OutputStream, data: &str) {
        self.notifier.notify::<RunOutput>(RunOutputParams {
            run_id,
            seq,
            stream,
            data: data.to_owned(),
        });
        let Some(view) = self.views.get_mut(&run_id) else {
            return;
        };
        let key = match stream {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        };
        let lines = view.partial.entry(key).or_default().push(data);
        if lines.is_empty() {
            return;
        }
        let prefix = match stream {
            OutputStream::Stdout => format!("[{}] ", view.label),
            OutputStream::Stderr => format!("[{}] stderr: ", view.label),
        };
        self.log(prefixed(&prefix, &lines));
    }

    /// Someone's input to the run, as the program got it.
    pub fn input(&mut self, params: RunInputParams) {
        if let Some(view) = self.views.get(&params.run_id) {
            let from = &params.name;
            let mut lines: Vec<String> = params
                .text
                .as_deref()
                .unwrap_or_default()
                .strip_suffix('\n')
                .or(params.text.as_deref())
                .into_iter()
                .filter(|text| !text.is_empty())
                .flat_map(|text| text.split('\n'))
                .map(|line| line.trim_end_matches('\r').to_owned())
                .collect();
            if params.eof {
                lines.push("(end of input)".to_owned());
            }
            if params.interrupt {
                lines.push("(interrupt)".to_owned());
            }
            let text = lines
                .iter()
                .map(|line| format!("[{}] > {line}  (from {from})", view.label))
                .collect::<Vec<_>>()
                .join("\n");
            self.log(text);
        }
        self.notifier.notify::<RunInput>(params);
    }

    pub(crate) fn finished(&mut self, run_id: u64, result: &RunResult, docs: &Documents) {
        self.publish_diagnostics(&result.diagnostics, docs);
        let summary = summarize(result);
        self.notifier.notify::<RunFinished>(RunFinishedParams {
            run_id,
            result: result.clone(),
            summary: summary.clone(),
        });
        let Some(mut view) = self.views.remove(&run_id) else {
            return;
        };
        let mut rest: Vec<(&str, String)> = view
            .partial
            .drain()
            .map(|(stream, mut lines)| (stream, lines.take_partial()))
            .collect();
        rest.sort();
        for (stream, text) in rest {
            if !text.is_empty() {
                let extra = if stream == "stderr" { "stderr: " } else { "" };
                self.log(format!("[{}] {extra}{text}", view.label));
            }
        }
        self.log(format!("[{}] {summary}", view.label));
        if let Some(token) = view.progress.take() {
            let end = WorkDoneProgressEnd {
                message: Some(summary.clone()),
            };
            self.notifier.progress(token, WorkDoneProgress::End(end));
        }
        let failed = result.error.is_some() || result.exit_code != Some(0);
        let typ = if failed {
            MessageType::WARNING
        } else {
            MessageType::INFO
        };
        self.notifier.show(
            typ,
            format!("Chorus {} ({}): {summary}", view.label, view.doc),
        );
    }

    /// Replaces the run diagnostics everywhere: a file the editor does not
    /// have open gets them by URI all the same (they show when it opens).
    fn publish_diagnostics(&mut self, found: &[RunDiagnostic], docs: &Documents) {
        let mut by_uri: BTreeMap<String, (Uri, Vec<Diagnostic>)> = BTreeMap::new();
        for diagnostic in found {
            // The open buffer's URI (it may differ from the path's, during a
            // rename) and its text, to count columns as the editor does.
            let (uri, text) = match docs.live(&diagnostic.path) {
                Some((uri, sync)) => (uri.clone(), Some(sync.mirror())),
                None => match docs.uri_of(&diagnostic.path) {
                    Some(uri) => (uri, None),
                    None => continue,
                },
            };
            let lsp = lsp_diagnostic(diagnostic, text, docs.encoding());
            by_uri
                .entry(uri.as_str().to_owned())
                .or_insert_with(|| (uri, Vec::new()))
                .1
                .push(lsp);
        }
        for uri in std::mem::take(&mut self.diagnosed) {
            if !by_uri.contains_key(uri.as_str()) {
                self.notifier.diagnostics(uri, Layer::Run, Vec::new());
            }
        }
        for (uri, diagnostics) in by_uri.into_values() {
            self.diagnosed.push(uri.clone());
            self.notifier.diagnostics(uri, Layer::Run, diagnostics);
        }
    }

    fn begin_progress(&self, run_id: u64, name: &str, doc: &str, plan: &str) -> NumberOrString {
        let token = NumberOrString::String(format!("chorus-run-{run_id}"));
        self.notifier.create_progress(token.clone());
        let message = if plan.is_empty() {
            format!("started by {name}")
        } else {
            format!("started by {name}: {plan}")
        };
        let begin = WorkDoneProgressBegin {
            title: format!("Chorus: running {doc}"),
            cancellable: Some(false),
            message: Some(message),
            percentage: None,
        };
        self.notifier
            .progress(token.clone(), WorkDoneProgress::Begin(begin));
        token
    }

    fn log(&self, message: String) {
        self.notifier.log(MessageType::INFO, message);
    }
}

/// Output cut into whole lines, for the log: chunks end anywhere, and a
/// log line must be a whole one.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    /// The output since the last line break.
    partial: String,
}

impl Lines {
    /// Adds `data`; returns the lines it ends, without their `\n` (nor a
    /// `\r` before it), and keeps the rest for the next chunk.
    pub(crate) fn push(&mut self, data: &str) -> Vec<String> {
        self.partial.push_str(data);
        let Some(last_newline) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let complete: String = self.partial.drain(..=last_newline).collect();
        complete[..last_newline]
            .split('\n')
            .map(|line| line.trim_end_matches('\r').to_owned())
            .collect()
    }

    /// The output since the last line break.
    pub(crate) fn partial(&self) -> &str {
        &self.partial
    }

    /// Takes the output since the last line break (the end of a program
    /// that did not end its last line).
    pub(crate) fn take_partial(&mut self) -> String {
        std::mem::take(&mut self.partial)
    }
}

/// `lines` as one log message, each line behind `prefix`.
pub(crate) fn prefixed(prefix: &str, lines: &[String]) -> String {
    lines
        .iter()
        .map(|line| format!("{prefix}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line a person reads: how the run ended.
pub fn summarize(result: &RunResult) -> String {
    let seconds = result.duration_ms as f64 / 1000.0;
    let mut text = if let Some(error) = &result.error {
        format!("could not run: {error}")
    } else if result.cancelled {
        format!("stopped after {seconds:.1} s")
    } else if result.timed_out {
        format!("timed out after {seconds:.1} s and was killed")
    } else if result.oom_killed {
        format!("killed: out of memory after {seconds:.1} s")
    } else {
        match result.exit_code {
            Some(code) => format!("exited with code {code} in {seconds:.2} s"),
            None => format!("killed after {seconds:.1} s"),
        }
    };
    if result.truncated {
        text.push_str(" (output truncated: too much output)");
    }
    let mut errors = result
        .diagnostics
        .iter()
        .filter(|d| d.severity == RunDiagnosticSeverity::Error);
    if let Some(first) = errors.next() {
        let (path, line, column) = (&first.path, first.line, first.column);
        text.push_str(&format!("; error at {path}:{line}:{column}"));
        let more = errors.count();
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
    }
    text
}

/// `found` as the editor's diagnostic: from its column to the end of its
/// line, counted in `encoding` on `text` (the editor's text of the file);
/// without the text, an empty range at the column, which counts code
/// points as UTF-32 does and so is right for the rest wherever the line
/// before the column is ASCII.
pub fn lsp_diagnostic(
    found: &RunDiagnostic,
    text: Option<&Rope>,
    encoding: Encoding,
) -> Diagnostic {
    let line = found.line.saturating_sub(1);
    let column = found.column.saturating_sub(1);
    let range = match text.filter(|text| (line as usize) < text.len_lines()) {
        Some(text) => {
            let line_start = text.line_to_char(line as usize);
            let line_end = line_start + line_text_len(text, line as usize);
            let start = (line_start + column as usize).min(line_end);
            Range {
                start: lsp_pos(to_pos(text, start, encoding)),
                end: lsp_pos(to_pos(text, line_end, encoding)),
            }
        }
        None => {
            let at = lsp_pos(LinePos { line, column });
            Range { start: at, end: at }
        }
    };
    let severity = match found.severity {
        RunDiagnosticSeverity::Error => DiagnosticSeverity::ERROR,
        RunDiagnosticSeverity::Warning => DiagnosticSeverity::WARNING,
    };
    Diagnostic {
        range,
        severity: Some(severity),
        source: Some(DIAGNOSTIC_SOURCE.to_owned()),
        message: found.message.clone(),
        ..Diagnostic::default()
    }
}

/// Characters on line `line` of `text`, without its line break.
fn line_text_len(text: &Rope, line: usize) -> usize {
    let slice = text.line(line);
    let mut len = slice.len_chars();
    while len > 0 && matches!(slice.char(len - 1), '\n' | '\r') {
        len -= 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_say_what_happened() {
        let ok = RunResult {
            exit_code: Some(0),
            duration_ms: 120,
            ..RunResult::default()
        };
        assert_eq!(summarize(&ok), "exited with code 0 in 0.12 s");
        let hog = RunResult {
            oom_killed: true,
            duration_ms: 900,
            exit_code: Some(137),
            ..RunResult::default()
        };
        assert_eq!(summarize(&hog), "killed: out of memory after 0.9 s");
        let flood = RunResult {
            truncated: true,
            exit_code: None,
            duration_ms: 2000,
            ..RunResult::default()
        };
        assert_eq!(
            summarize(&flood),
            "killed after 2.0 s (output truncated: too much output)"
        );
        let failed = RunResult {
            exit_code: Some(101),
            duration_ms: 1500,
            diagnostics: vec![
                diagnostic("src/lib.rs", 9, 1, RunDiagnosticSeverity::Warning),
                diagnostic("src/main.rs", 3, 5, RunDiagnosticSeverity::Error),
                diagnostic("src/main.rs", 7, 2, RunDiagnosticSeverity::Error),
            ],
            ..RunResult::default()
        };
        assert_eq!(
            summarize(&failed),
            "exited with code 101 in 1.50 s; error at src/main.rs:3:5 and 1 more"
        );
    }

    #[test]
    fn output_becomes_whole_lines_however_it_is_cut() {
        let mut lines = Lines::default();
        assert!(lines.push("name").is_empty());
        assert_eq!(lines.partial(), "name");
        assert_eq!(lines.push("? Ada\r\nhi A"), ["name? Ada"]);
        // Blank lines count, at the end of a chunk too.
        assert_eq!(lines.push("da\n\n"), ["hi Ada", ""]);
        assert_eq!(lines.push("\nbye"), [""]);
        assert_eq!(lines.take_partial(), "bye");
        assert_eq!(lines.partial(), "");
    }

    fn diagnostic(
        path: &str,
        line: u32,
        column: u32,
        severity: RunDiagnosticSeverity,
    ) -> RunDiagnostic {
        RunDiagnostic {
            path: path.to_owned(),
            line,
            column,
            severity,
            message: "mismatched types".to_owned(),
        }
    }

    fn range(diagnostic: &Diagnostic) -> [u32; 4] {
        let Range { start, end } = diagnostic.range;
        [start.line, start.character, end.line, end.character]
    }

    #[test]
    fn run_diagnostics_count_columns_as_the_editor_does() {
        // Column 5, in code points, is the space after the emoji: one code
        // point, two UTF-16 units, four UTF-8 bytes.
        let text = Rope::from_str("fn main() {\r\n  é😀 = x;\r\n}\n");
        let found = diagnostic("src/main.rs", 2, 5, RunDiagnosticSeverity::Error);
        let at = |encoding| range(&lsp_diagnostic(&found, Some(&text), encoding));
        assert_eq!(at(Encoding::Utf32), [1, 4, 1, 9]);
        assert_eq!(at(Encoding::Utf16), [1, 5, 1, 10]);
        assert_eq!(at(Encoding::Utf8), [1, 8, 1, 13]);
        let lsp = lsp_diagnostic(&found, Some(&text), Encoding::Utf16);
        assert_eq!(lsp.severity, Some(DiagnosticSeverity::ERROR));
        assert_eq!(lsp.source.as_deref(), Some("chorus run"));
        assert_eq!(lsp.message, "mismatched types");
    }

    #[test]
    fn run_diagnostics_outside_the_text_still_name_their_line() {
        let text = Rope::from_str("x = 1\n");
        let past_the_end = diagnostic("a.py", 9, 3, RunDiagnosticSeverity::Warning);
        let lsp = lsp_diagnostic(&past_the_end, Some(&text), Encoding::Utf16);
        assert_eq!(range(&lsp), [8, 2, 8, 2]);
        assert_eq!(lsp.severity, Some(DiagnosticSeverity::WARNING));
        let past_the_line = diagnostic("a.py", 1, 40, RunDiagnosticSeverity::Error);
        assert_eq!(
            range(&lsp_diagnostic(
                &past_the_line,
                Some(&text),
                Encoding::Utf16
            )),
            [0, 5, 0, 5]
        );
        let unopened = diagnostic("a.py", 3, 1, RunDiagnosticSeverity::Error);
        assert_eq!(
            range(&lsp_diagnostic(&unopened, None, Encoding::Utf8)),
            [2, 0, 2, 0]
        );
    }
}
