//! Finds compiler and interpreter errors in a run's stderr and locates them in the
//! session's files, so that editors can show them where they are. Pure: text in,
//! [`RunDiagnostic`]s out.
//!
//! Formats understood (all captured from the sandbox image; see the tests):
//! - rustc / cargo: `error[E0425]: message` then ` --> src/main.rs:3:5`
//!   (warnings too); paths are relative to the directory cargo ran in, or its
//!   workspace root above it.
//! - gcc: `main.c:3:5: error: message` (warnings too); columns are gcc's display
//!   columns, where a tab advances to the next multiple of 8.
//! - Python: a traceback's innermost frame in a session file (`File "/work/x.py",
//!   line 3`), with the exception line as the message; a `SyntaxError`'s caret gives
//!   the column.
//! - node: `/work/x.js:3`, the source line, a caret, then the error line.
//! - Rust panics: `thread 'main' panicked at src/main.rs:3:21:` and the message on
//!   the next line (`cargo test` prints its tests' panics on stdout).
//! - pytest: `test_calc.py:5: AssertionError` after the failure's `E` lines.
//!
//! Invariants: every diagnostic names a file of the session (others, such as vendored
//! crates or the standard library, are dropped), lines are 1-based, and columns are
//! 1-based code points, converted from each tool's own unit with the file's text.
//! Errors come before warnings; at most [`MAX_DIAGNOSTICS`].

use std::collections::HashMap;

use crate::{RunDiagnostic, RunDiagnosticSeverity};

/// Enough for the first screenful of a failed build; the rest only repeats.
pub const MAX_DIAGNOSTICS: usize = 20;

/// The session's files by path, and the project directory the command ran in.
pub struct Sources<'a> {
    files: HashMap<&'a str, &'a str>,
    project_dir: &'a str,
}

impl<'a> Sources<'a> {
    pub fn new(files: &'a [(String, String)], project_dir: &'a str) -> Self {
        Sources {
            files: files
                .iter()
                .map(|(path, text)| (path.trim_start_matches("./"), text.as_str()))
                .collect(),
            project_dir,
        }
    }

    /// The session path a tool's path names: `/work/...` as is, a relative path against
    /// the project directory or, failing that, any directory above it.
    fn resolve(&self, raw: &str) -> Option<&'a str> {
        let raw = raw.trim();
        let candidates: Vec<String> = if let Some(inside) = raw.strip_prefix("/work/") {
            vec![inside.to_owned()]
        } else if raw.starts_with('/') {
            return None;
        } else {
            let raw = raw.trim_start_matches("./");
            let mut dirs = vec![self.project_dir.to_owned()];
            let mut dir = self.project_dir;
            while let Some((parent, _)) = dir.rsplit_once('/') {
                dirs.push(parent.to_owned());
                dir = parent;
            }
            if !self.project_dir.is_empty() {
                dirs.push(String::new());
            }
            dirs.into_iter()
                .map(|dir| {
                    if dir.is_empty() {
                        raw.to_owned()
                    } else {
                        format!("{dir}/{raw}")
                    }
                })
                .collect()
        };
        candidates
            .iter()
            .find_map(|candidate| self.files.get_key_value(candidate.as_str()))
            .map(|(path, _)| *path)
    }

    fn line(&self, path: &str, line: u32) -> Option<&'a str> {
        let text = self.files.get(path)?;
        text.split('\n')
            .nth(line.checked_sub(1)? as usize)
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
    }
}

/// What of a run's stderr is kept for [`parse`]: the first [`HEAD_BYTES`] (where
/// compilers put their first errors) and the last [`TAIL_BYTES`] (where an interpreter's
/// traceback ends up after the program's own output).
#[derive(Default)]
pub struct Capture {
    head: String,
    tail: String,
    overflowed: bool,
}

pub const HEAD_BYTES: usize = 64 * 1024;
pub const TAIL_BYTES: usize = 16 * 1024;

impl Capture {
    pub fn push(&mut self, text: &str) {
        let room = HEAD_BYTES - self.head.len();
        if !self.overflowed && text.len() <= room {
            self.head.push_str(text);
            return;
        }
        self.overflowed = true;
        self.tail.push_str(text);
        if self.tail.len() > 2 * TAIL_BYTES {
            let mut cut = self.tail.len() - TAIL_BYTES;
            while !self.tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.tail.drain(..cut);
        }
    }

    /// The kept text: the head, and the tail after a line break when output was lost
    /// between them.
    pub fn text(&self) -> String {
        if !self.overflowed {
            return self.head.clone();
        }
        let mut start = self.tail.len().saturating_sub(TAIL_BYTES);
        while !self.tail.is_char_boundary(start) {
            start += 1;
        }
        let tail = &self.tail[start..];
        // Start the tail at a whole line.
        let tail = match (start > 0, tail.find('\n')) {
            (true, Some(newline)) => &tail[newline + 1..],
            _ => tail,
        };
        format!("{}\n{tail}", self.head)
    }
}

/// The diagnostics in `output` (a run's stderr), errors first.
pub fn parse(output: &str, sources: &Sources<'_>) -> Vec<RunDiagnostic> {
    let lines: Vec<&str> = output.lines().collect();
    let mut found = Vec::new();
    rust(&lines, sources, &mut found);
    gcc(&lines, sources, &mut found);
    python(&lines, sources, &mut found);
    node(&lines, sources, &mut found);
    rust_panic(&lines, sources, &mut found);
    pytest(&lines, sources, &mut found);
    // Stable: within one severity the tool's order (first error first) stays.
    found.sort_by_key(|d| d.severity != RunDiagnosticSeverity::Error);
    found.dedup_by(|a, b| a.path == b.path && a.line == b.line && a.message == b.message);
    found.truncate(MAX_DIAGNOSTICS);
    found
}

fn diagnostic(
    path: &str,
    line: u32,
    column: u32,
    severity: RunDiagnosticSeverity,
    message: &str,
) -> RunDiagnostic {
    RunDiagnostic {
        path: path.to_owned(),
        line: line.max(1),
        column: column.max(1),
        severity,
        message: message.trim().to_owned(),
    }
}

/// `path:line[:column]`, from the right so that a path may hold colons.
fn split_location(location: &str) -> Option<(&str, u32, Option<u32>)> {
    let (rest, last) = location.rsplit_once(':')?;
    let last: u32 = last.parse().ok()?;
    match rest.rsplit_once(':') {
        Some((path, line)) if line.parse::<u32>().is_ok() => {
            Some((path, line.parse().ok()?, Some(last)))
        }
        _ => Some((rest, last, None)),
    }
}

fn rust(lines: &[&str], sources: &Sources<'_>, found: &mut Vec<RunDiagnostic>) {
    let mut pending: Option<(RunDiagnosticSeverity, &str)> = None;
    for line in lines {
        let header = [
            ("error", RunDiagnosticSeverity::Error),
            ("warning", RunDiagnosticSeverity::Warning),
        ]
        .into_iter()
        .find_map(|(word, severity)| {
            let rest = line.strip_prefix(word)?;
            // `error[E0425]: ...` or `error: ...`
            let rest = match rest.strip_prefix('[') {
                Some(code) => code.split_once("]")?.1,
                None => rest,
            };
            Some((severity, rest.strip_prefix(": ")?))
        });
        if let Some(header) = header {
            pending = Some(header);
            continue;
        }
        let Some(location) = line.trim_start().strip_prefix("--> ") else {
            continue;
        };
        let Some((severity, message)) = pending.take() else {
            continue;
        };
        let Some((raw, line_number, column)) = split_location(location) else {
            continue;
        };
        if let Some(path) = sources.resolve(raw) {
            // rustc's columns already count characters.
            found.push(diagnostic(
                path,
                line_number,
                column.unwrap_or(1),
                severity,
                message,
            ));
        }
    }
}

fn gcc(lines: &[&str], sources: &Sources<'_>, found: &mut Vec<RunDiagnostic>) {
    for line in lines {
        for (marker, severity) in [
            (": error: ", RunDiagnosticSeverity::Error),
            (": fatal error: ", RunDiagnosticSeverity::Error),
            (": warning: ", RunDiagnosticSeverity::Warning),
        ] {
            let Some((location, message)) = line.split_once(marker) else {
                continue;
            };
            let Some((raw, line_number, column)) = split_location(location) else {
                continue;
            };
            let Some(path) = sources.resolve(raw) else {
                continue;
            };
            let column = column.map_or(1, |display| {
                sources
                    .line(path, line_number)
                    .map_or(display, |text| display_to_code_points(text, display))
            });
            found.push(diagnostic(path, line_number, column, severity, message));
            break;
        }
    }
}

/// gcc's display column (tabs to the next multiple of 8, one per character otherwise)
/// as a code-point column.
fn display_to_code_points(text: &str, display: u32) -> u32 {
    let mut width = 0;
    for (index, character) in text.chars().enumerate() {
        let next = if character == '\t' {
            (width / 8 + 1) * 8
        } else {
            width + 1
        };
        if display <= next {
            return index as u32 + 1;
        }
        width = next;
    }
    text.chars().count() as u32 + 1
}

fn python(lines: &[&str], sources: &Sources<'_>, found: &mut Vec<RunDiagnostic>) {
    let mut index = 0;
    while index < lines.len() {
        let is_traceback = lines[index].starts_with("Traceback (most recent call last):");
        let is_bare_syntax_error = lines[index].starts_with("  File \"")
            && (index == 0 || !lines[index - 1].starts_with(' '));
        if !is_traceback && !is_bare_syntax_error {
            index += 1;
            continue;
        }
        // Frames until the first line that is not indented: the exception.
        let mut innermost: Option<(&str, u32, Option<u32>)> = None;
        let mut cursor = if is_traceback { index + 1 } else { index };
        while cursor < lines.len() && lines[cursor].starts_with(' ') {
            if let Some((path, line_number)) = python_frame(lines[cursor]) {
                // Frames outside the session (the standard library) do not replace
                // the innermost frame that is the user's.
                if let Some(path) = sources.resolve(path) {
                    innermost = Some((path, line_number, None));
                }
            } else if let (Some((path, line_number, _)), true) =
                (innermost, is_caret_line(lines[cursor]))
            {
                // Carets (`~~^^^`) under the source line, which is printed indented by 4
                // after stripping the file's own indentation; the first marks the start
                // of the failing expression.
                let caret = lines[cursor].find(['^', '~']).unwrap_or(4) as u32;
                let indent = sources.line(path, line_number).map_or(0, |text| {
                    text.chars().take_while(|c| c.is_whitespace()).count() as u32
                });
                innermost = Some((
                    path,
                    line_number,
                    Some(caret.saturating_sub(4) + indent + 1),
                ));
            }
            cursor += 1;
        }
        if let (Some((path, line_number, column)), Some(message)) = (innermost, lines.get(cursor)) {
            found.push(diagnostic(
                path,
                line_number,
                column.unwrap_or(1),
                RunDiagnosticSeverity::Error,
                message,
            ));
        }
        index = cursor.max(index + 1);
    }
}

fn is_caret_line(line: &str) -> bool {
    let marks = line.trim();
    !marks.is_empty() && marks.chars().all(|c| c == '^' || c == '~')
}

/// `  File "/work/x.py", line 3, in f` → (path, line).
fn python_frame(line: &str) -> Option<(&str, u32)> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (path, rest) = rest.split_once("\", line ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((path, digits.parse().ok()?))
}

fn node(lines: &[&str], sources: &Sources<'_>, found: &mut Vec<RunDiagnostic>) {
    for (index, line) in lines.iter().enumerate() {
        // The header is the location alone on its line: `/work/x.js:3`.
        let Some((raw, line_number, None)) = split_location(line) else {
            continue;
        };
        let is_script = [".js", ".mjs", ".cjs"].iter().any(|ext| raw.ends_with(ext));
        let Some(path) = sources.resolve(raw).filter(|_| is_script) else {
            continue;
        };
        // Then the source line, a caret line, a blank line and `SomeError: message`.
        let caret = lines
            .get(index + 2)
            .and_then(|caret_line| caret_line.find('^'))
            .map(|byte| caret_column(lines.get(index + 1).copied().unwrap_or(""), byte));
        let message = lines[index + 1..].iter().find(|l| is_js_error(l));
        if let Some(message) = message {
            found.push(diagnostic(
                path,
                line_number,
                caret.unwrap_or(1),
                RunDiagnosticSeverity::Error,
                message,
            ));
        }
    }
}

/// The code-point column of a caret that node indents by `units` spaces: V8 counts
/// UTF-16 code units of the source line.
fn caret_column(source_line: &str, units: usize) -> u32 {
    let mut seen = 0;
    for (index, character) in source_line.chars().enumerate() {
        if seen >= units {
            return index as u32 + 1;
        }
        seen += character.len_utf16();
    }
    source_line.chars().count() as u32 + 1
}

fn rust_panic(lines: &[&str], sources: &Sources<'_>, found: &mut Vec<RunDiagnostic>) {
    for (index, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("thread '") else {
            continue;
        };
        let Some((_, location)) = rest.split_once(" panicked at ") else {
            continue;
        };
        let Some((raw, line_number, column)) = split_location(location.trim_end_matches(':'))
        else {
            continue;
        };
        let Some(path) = sources.resolve(raw) else {
            continue;
        };
        let message = lines.get(index + 1).copied().unwrap_or("panicked");
        // Panic columns count characters, as rustc's do.
        let message = format!("panicked: {message}");
        found.push(diagnostic(
            path,
            line_number,
            column.unwrap_or(1),
            RunDiagnosticSeverity::Error,
            &message,
        ));
    }
}

fn pytest(lines: &[&str], sources: &Sources<'_>, found: &mut Vec<RunDiagnostic>) {
    for (index, line) in lines.iter().enumerate() {
        // `test_calc.py:5: AssertionError`: a path, a line and an exception's name only.
        let Some((location, exception)) = line.rsplit_once(": ") else {
            continue;
        };
        let is_name = exception
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !is_name || !(exception.ends_with("Error") || exception.ends_with("Exception")) {
            continue;
        }
        let Some((raw, line_number, None)) = split_location(location) else {
            continue;
        };
        let Some(path) = sources.resolve(raw).filter(|path| path.ends_with(".py")) else {
            continue;
        };
        // The first `E` line of the failure above says what went wrong.
        let explanation = lines[..index]
            .iter()
            .rev()
            .take_while(|l| !l.starts_with("____"))
            .filter_map(|l| l.strip_prefix("E "))
            .last()
            .map(str::trim);
        let message = match explanation {
            Some(explanation) => format!("{exception}: {explanation}"),
            None => exception.to_owned(),
        };
        found.push(diagnostic(
            path,
            line_number,
            1,
            RunDiagnosticSeverity::Error,
            &message,
        ));
    }
}

fn is_js_error(line: &str) -> bool {
    let Some((name, _)) = line.split_once(':') else {
        return false;
    };
    !name.is_empty()
        && name.ends_with("Error")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect()
    }

    fn check(output: &str, files: &[(String, String)], project_dir: &str) -> Vec<String> {
        parse(output, &Sources::new(files, project_dir))
            .into_iter()
            .map(|d| {
                format!(
                    "{:?} {}:{}:{} {}",
                    d.severity, d.path, d.line, d.column, d.message
                )
            })
            .collect()
    }

    // Real output of the sandbox image (rustc 1.96, GCC 12, Python 3.11, Node 18) for
    // the files in each test. rustc reports no lints after a resolve error, so the
    // warning block comes from a run of the same file without the error.
    const CARGO_OUTPUT: &str = "   Compiling demo v0.1.0 (/work/demo)
error[E0425]: cannot find value `missing_value` in this scope
 --> src/main.rs:3:20
  |
3 |     println!(\"{}\", missing_value);
  |                    ^^^^^^^^^^^^^ not found in this scope

warning: unused variable: `unused`
 --> src/main.rs:2:9
  |
2 |     let unused = 1;
  |         ^^^^^^ help: if this is intentional, prefix it with an underscore: `_unused`

For more information about this error, try `rustc --explain E0425`.
error: could not compile `demo` (bin \"demo\") due to 1 previous error
";

    #[test]
    fn cargo_errors_resolve_against_the_project_directory() {
        let files = files(&[
            ("demo/Cargo.toml", ""),
            (
                "demo/src/main.rs",
                "fn main() {\n    let unused = 1;\n    println!(\"{}\", missing_value);\n}\n",
            ),
        ]);
        assert_eq!(
            check(CARGO_OUTPUT, &files, "demo"),
            [
                "Error demo/src/main.rs:3:20 cannot find value `missing_value` in this scope",
                "Warning demo/src/main.rs:2:9 unused variable: `unused`",
            ]
        );
        // Paths of a workspace member are relative to the workspace root above it.
        let member = CARGO_OUTPUT.replace(" --> src/", " --> demo/src/");
        assert_eq!(check(&member, &files, "demo").len(), 2);
        // Errors in files outside the session (vendored crates) are dropped.
        let vendored = CARGO_OUTPUT.replace(" --> src/", " --> /opt/chorus/cargo/vendor/x/src/");
        assert!(check(&vendored, &files, "demo").is_empty());
    }

    #[test]
    fn gcc_errors_with_tabs() {
        let output = "main.c: In function \u{2018}main\u{2019}:
main.c:4:16: error: \u{2018}y\u{2019} undeclared (first use in this function)
    4 |         return y;
      |                ^
main.c:4:16: note: each undeclared identifier is reported only once for each function it appears in
";
        let files = files(&[(
            "main.c",
            "#include <stdio.h>\nint main(void) {\n\tint x = 1;\n\treturn y;\n}\n",
        )]);
        assert_eq!(
            check(output, &files, ""),
            ["Error main.c:4:9 \u{2018}y\u{2019} undeclared (first use in this function)"]
        );
    }

    #[test]
    fn python_tracebacks_point_at_the_innermost_session_frame() {
        let output = "Traceback (most recent call last):
  File \"/work/app.py\", line 6, in <module>
    main()
  File \"/work/app.py\", line 4, in main
    helper.explode(3)
  File \"/work/helper.py\", line 3, in explode
    return {}[\"\u{e9}\"] + n
           ~~^^^^^
KeyError: '\u{e9}'
";
        let files = files(&[
            (
                "app.py",
                "import helper\n\ndef main():\n    helper.explode(3)\n\nmain()\n",
            ),
            (
                "helper.py",
                "def explode(n):\n    if n:\n        return {}[\"\u{e9}\"] + n\n",
            ),
        ]);
        assert_eq!(
            check(output, &files, ""),
            ["Error helper.py:3:16 KeyError: '\u{e9}'"]
        );
        // A frame in the standard library after it does not hide it.
        let deeper = output.replace(
            "KeyError",
            "  File \"/usr/lib/python3.11/json/__init__.py\", line 346, in loads\n    return x\nKeyError",
        );
        assert_eq!(
            check(&deeper, &files, ""),
            ["Error helper.py:3:16 KeyError: '\u{e9}'"]
        );
    }

    #[test]
    fn python_syntax_errors_have_a_column() {
        let output = "  File \"/work/bad.py\", line 2
    print(\"a\"
         ^
SyntaxError: '(' was never closed
";
        let files = files(&[("bad.py", "x = [1,\nprint(\"a\"\n")]);
        assert_eq!(
            check(output, &files, ""),
            ["Error bad.py:2:6 SyntaxError: '(' was never closed"]
        );
    }

    #[test]
    fn node_errors_and_syntax_errors() {
        let output = "/work/main.js:3
  return \"\u{e9}\" + notDefined;
               ^

ReferenceError: notDefined is not defined
    at f (/work/main.js:3:16)
    at Object.<anonymous> (/work/main.js:5:1)
    at Module._compile (node:internal/modules/cjs/loader:1364:14)

Node.js v18.20.4
";
        let files = files(&[
            (
                "main.js",
                "const a = 1;\nfunction f() {\n  return \"\u{e9}\" + notDefined;\n}\nf();\n",
            ),
            ("bad.js", "let x = 1;\nlet y = ;\n"),
        ]);
        assert_eq!(
            check(output, &files, ""),
            ["Error main.js:3:16 ReferenceError: notDefined is not defined"]
        );
        let output = "/work/bad.js:2
let y = ;
        ^

SyntaxError: Unexpected token ';'
    at internalCompileFunction (node:internal/vm:76:18)
";
        assert_eq!(
            check(output, &files, ""),
            ["Error bad.js:2:9 SyntaxError: Unexpected token ';'"]
        );
        // Astral characters count once, though V8 counts them twice.
        assert_eq!(caret_column("\u{1F600}x", 2), 2);
    }

    #[test]
    fn rust_panics_in_programs_and_tests() {
        let files = files(&[(
            "p/src/main.rs",
            "fn main() {\n    let v: Vec<i32> = Vec::new();\n    println!(\"{}\", v[3]);\n}\n",
        )]);
        let output = "thread 'main' (8) panicked at src/main.rs:3:21:
index out of bounds: the len is 0 but the index is 3
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
";
        assert_eq!(
            check(output, &files, "p"),
            ["Error p/src/main.rs:3:21 panicked: index out of bounds: the len is 0 but the index is 3"]
        );
        let test_output = "---- fails stdout ----

thread 'fails' (72) panicked at src/main.rs:8:5:
assertion `left == right` failed: maths
  left: 2
 right: 3
";
        assert_eq!(
            check(test_output, &files, "p"),
            ["Error p/src/main.rs:8:5 panicked: assertion `left == right` failed: maths"]
        );
    }

    #[test]
    fn pytest_failures() {
        let output =
            "F.                                                                       [100%]
=================================== FAILURES ===================================
___________________________________ test_add ___________________________________

    def test_add():
>       assert add(1, 1) == 3
E       assert 2 == 3
E        +  where 2 = add(1, 1)

test_calc.py:5: AssertionError
=========================== short test summary info ============================
FAILED test_calc.py::test_add - assert 2 == 3
1 failed, 1 passed in 0.02s
";
        let files = files(&[("tests/test_calc.py", ""), ("tests/calc.py", "")]);
        assert_eq!(
            check(output, &files, "tests"),
            ["Error tests/test_calc.py:5:1 AssertionError: assert 2 == 3"]
        );
    }

    #[test]
    fn capture_keeps_head_and_tail() {
        let mut capture = Capture::default();
        capture.push("first\n");
        assert_eq!(capture.text(), "first\n");
        for _ in 0..10_000 {
            capture.push("middle line of output\n");
        }
        capture.push("Traceback (most recent call last):\n");
        let text = capture.text();
        assert!(text.starts_with("first\n"));
        assert!(text.ends_with("Traceback (most recent call last):\n"));
        assert!(text.len() <= HEAD_BYTES + TAIL_BYTES + 1);
    }

    #[test]
    fn split_location_takes_numbers_from_the_right() {
        assert_eq!(split_location("a:b.c:3:5"), Some(("a:b.c", 3, Some(5))));
        assert_eq!(
            split_location("/work/x.js:3"),
            Some(("/work/x.js", 3, None))
        );
        assert_eq!(split_location("nothing"), None);
    }

    #[test]
    fn gcc_display_columns_become_code_points() {
        assert_eq!(display_to_code_points("\tx", 9), 2);
        assert_eq!(display_to_code_points("é x", 3), 3);
        assert_eq!(display_to_code_points("ab", 10), 3);
    }
}
