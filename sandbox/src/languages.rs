//! The languages a session can run, and how a run request picks one.
//!
//! Each language is a command line run inside the container's work dir (`/work`), where
//! every session document has been unpacked. `{main}` in the command stands for the
//! workspace-relative path of the file to run; the request's `args` follow the command.
//! Compiled languages compile into `/tmp` (a tmpfs) and then `exec` the binary, so the
//! compile step counts against the same limits as the program (see `limits.rs`).

/// The default image: one local image with every toolchain, built by
/// `sandbox/images/build-local.sh` (see `sandbox/images/README.md` for per-language images).
pub const DEFAULT_IMAGE: &str = "chorus-sandbox:bookworm-2";

/// How to run one language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Language {
    /// Name a request may give explicitly (`"python"`), matched case-insensitively.
    pub name: String,
    /// File extensions without the dot (`"py"`), used when the request names no language.
    pub extensions: Vec<String>,
    /// Docker image holding the toolchain; it must exist locally (no pulls at run time).
    pub image: String,
    /// argv run in the work dir; `{main}` is replaced by the main file's relative path.
    pub command: Vec<String>,
}

impl Language {
    fn new(name: &str, extensions: &[&str], command: &[&str]) -> Self {
        Language {
            name: name.to_owned(),
            extensions: extensions.iter().map(|ext| (*ext).to_owned()).collect(),
            image: DEFAULT_IMAGE.to_owned(),
            command: command.iter().map(|part| (*part).to_owned()).collect(),
        }
    }

    /// The argv for one run: `{main}` substituted, then the user's arguments.
    pub fn argv(&self, main: &str, args: &[String]) -> Vec<String> {
        self.command
            .iter()
            .map(|part| part.replace("{main}", main))
            .chain(args.iter().cloned())
            .collect()
    }
}

/// Rust, Python, JavaScript (node), C and shell, all on [`DEFAULT_IMAGE`].
///
/// The compiled languages go through `sh -c` so that compile and run are one command:
/// `$0` is the main file and `"$@"` the user's arguments, which keeps both safe from word
/// splitting. Rust is compiled unoptimised (`rustc` defaults) because a small program
/// compiles in about a third of the time and the runs are short. C compiles only the main
/// file; other files in the work dir are reachable through `#include`.
pub fn default_languages() -> Vec<Language> {
    vec![
        Language::new(
            "rust",
            &["rs"],
            &[
                "sh",
                "-c",
                "rustc --edition 2021 -o /tmp/chorus-main \"$0\" && exec /tmp/chorus-main \"$@\"",
                "{main}",
            ],
        ),
        Language::new("python", &["py"], &["python3", "-u", "{main}"]),
        Language::new("javascript", &["js", "mjs", "cjs"], &["node", "{main}"]),
        Language::new(
            "c",
            &["c"],
            &[
                "sh",
                "-c",
                "gcc -O1 -o /tmp/chorus-main \"$0\" -lm && exec /tmp/chorus-main \"$@\"",
                "{main}",
            ],
        ),
        Language::new("shell", &["sh", "bash"], &["sh", "{main}"]),
    ]
}

/// Picks the language: the explicit name if given, else the main file's extension.
pub fn resolve<'a>(
    languages: &'a [Language],
    explicit: Option<&str>,
    main: &str,
) -> Option<&'a Language> {
    match explicit {
        Some(name) => languages
            .iter()
            .find(|language| language.name.eq_ignore_ascii_case(name)),
        None => {
            let file_name = main.rsplit('/').next().unwrap_or(main);
            let (_, extension) = file_name.rsplit_once('.')?;
            languages.iter().find(|language| {
                language
                    .extensions
                    .iter()
                    .any(|candidate| candidate.eq_ignore_ascii_case(extension))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_by_extension_and_by_name() {
        let languages = default_languages();
        assert_eq!(
            resolve(&languages, None, "src/main.py").map(|l| l.name.as_str()),
            Some("python")
        );
        assert_eq!(
            resolve(&languages, Some("Rust"), "x.txt").map(|l| l.name.as_str()),
            Some("rust")
        );
        assert!(resolve(&languages, None, "Makefile").is_none());
        assert!(resolve(&languages, Some("cobol"), "a.py").is_none());
    }

    #[test]
    fn argv_substitutes_main_and_appends_args() {
        let languages = default_languages();
        let python = resolve(&languages, Some("python"), "a.py").unwrap();
        assert_eq!(
            python.argv("src/a.py", &["--flag".to_owned()]),
            vec!["python3", "-u", "src/a.py", "--flag"]
        );
    }
}
