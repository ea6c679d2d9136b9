//! Showing a session's runs in the editor through standard LSP alone, plus
//! `chorus/run*` notifications for plugins that draw richer views.
//!
//! * every output line → `window/logMessage`, prefixed `[run N · who]`
//!   (VS Code: Output channel; Neovim/Helix: their LSP log);
//! * `$/progress` begin/end while it runs (when the editor supports it);
//! * the result → `window/showMessage` (toast, `:messages`, status line).

use std::collections::HashMap;

use chorus_protocol::wire::{OutputStream, RunResult};
use tower_lsp_server::ls_types::{
    MessageType, NumberOrString, WorkDoneProgress, WorkDoneProgressBegin, WorkDoneProgressEnd,
};

use crate::lsp_ext::{
    RunFinished, RunFinishedParams, RunOutput, RunOutputParams, RunStarted, RunStartedParams,
};
use crate::notifier::Notifier;

struct RunView {
    label: String,
    doc: String,
    /// Output not yet ending in a newline, per stream, so that log lines
    /// are whole lines.
    partial: HashMap<&'static str, String>,
    progress: Option<NumberOrString>,
}

/// The runs this editor has heard of, by id.
pub struct Runs {
    notifier: Notifier,
    work_done_progress: bool,
    views: HashMap<u64, RunView>,
}

impl Runs {
    pub fn new(notifier: Notifier) -> Self {
        Runs {
            notifier,
            work_done_progress: false,
            views: HashMap::new(),
        }
    }

    pub fn set_progress_support(&mut self, supported: bool) {
        self.work_done_progress = supported;
    }

    pub fn started(&mut self, run_id: u64, name: &str, doc: &str) {
        let label = format!("run {run_id} · {name}");
        let progress = self
            .work_done_progress
            .then(|| self.begin_progress(run_id, name, doc));
        self.log(format!("[{label}] started {doc}"));
        self.notifier.notify::<RunStarted>(RunStartedParams {
            run_id,
            name: name.to_owned(),
            doc: doc.to_owned(),
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
        let buffer = view.partial.entry(key).or_default();
        buffer.push_str(data);
        let Some(last_newline) = buffer.rfind('\n') else {
            return;
        };
        let complete: String = buffer.drain(..=last_newline).collect();
        let prefix = match stream {
            OutputStream::Stdout => format!("[{}] ", view.label),
            OutputStream::Stderr => format!("[{}] stderr: ", view.label),
        };
        let text = complete
            .trim_end_matches('\n')
            .split('\n')
            .map(|line| format!("{prefix}{}", line.trim_end_matches('\r')))
            .collect::<Vec<_>>()
            .join("\n");
        self.log(text);
    }

    pub fn finished(&mut self, run_id: u64, result: &RunResult) {
        let summary = summarize(result);
        self.notifier.notify::<RunFinished>(RunFinishedParams {
            run_id,
            result: result.clone(),
            summary: summary.clone(),
        });
        let Some(mut view) = self.views.remove(&run_id) else {
            return;
        };
        let mut rest: Vec<(&str, String)> = view.partial.drain().collect();
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

    fn begin_progress(&self, run_id: u64, name: &str, doc: &str) -> NumberOrString {
        let token = NumberOrString::String(format!("chorus-run-{run_id}"));
        self.notifier.create_progress(token.clone());
        let begin = WorkDoneProgressBegin {
            title: format!("Chorus: running {doc}"),
            cancellable: Some(false),
            message: Some(format!("started by {name}")),
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
    text
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
    }
}
