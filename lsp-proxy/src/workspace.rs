//! What of a folder a session gets when it is shared: the walk that
//! `chorus share` and the `chorus.share` command publish, and how each file
//! goes on the wire ([`PutContent`]).
//!
//! The walk is ripgrep's (the `ignore` crate) rather than ours: `.gitignore`
//! semantics (negations, anchoring, directory-only patterns, nested files,
//! `.git/info/exclude`) are easy to get subtly wrong, and people expect
//! what git and ripgrep do. On top of its standard filters:
//! * `.gitignore` counts whether or not the folder is a git repository
//!   (a shared folder is often a copy without `.git/`);
//! * the user's global git excludes (`core.excludesFile`) count too: they
//!   hold what a person never wants to publish (editor swap files,
//!   `.DS_Store`, `.env.local`), and sharing less is the safe mistake;
//! * `.chorusignore` files, in the same syntax, take precedence over the
//!   rest (`!name` there shares a file git ignores);
//! * hidden files are shared (`.gitignore`, `.github/`, `.editorconfig`
//!   belong to the project); `.git/` never is, nor `.chorus/` at the root,
//!   where the proxy keeps backups of files it replaced;
//! * symbolic links are not followed, and not shared.
//!
//! Invariant: every listed path is relative to the root, `/`-separated and
//! accepted by [`validate_doc_path`]; a file whose name cannot be one is
//! skipped with the reason.

use std::io::Read;
use std::path::{Path, PathBuf};

use chorus_protocol::wire::{validate_doc_path, PutContent, DEFAULT_MAX_MESSAGE_BYTES};
use ignore::WalkBuilder;

/// The per-directory ignore files of Chorus's own, besides git's.
pub const CHORUS_IGNORE: &str = ".chorusignore";
/// The proxy's own directory at a workspace's root; never shared.
pub const CHORUS_DIR: &str = ".chorus";

/// Room kept in a `put` frame for everything but the text (the path, the
/// JSON around it).
const FRAME_SLACK: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{} is not a folder", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot read {}: {source}", .path.display())]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file the walk found, not yet read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFile {
    /// Relative to the root, `/`-separated: its document path.
    pub path: String,
    /// Where it is on disk.
    pub abs: PathBuf,
    /// Its size when listed.
    pub size: u64,
}

/// A file the walk could not list, and why (for the user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedFile {
    /// Relative to the root; lossy when the name is not UTF-8.
    pub path: String,
    pub reason: String,
}

/// A folder's shareable files, sorted by path, and what was left out
/// for a reason the user should hear (not the ignored ones).
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<LocalFile>,
    pub skipped: Vec<SkippedFile>,
}

impl Listing {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Lists the files of `root` to share. Reads metadata only: big trees are
/// listed quickly, and read one file at a time by [`read_for_put`]. Blocks:
/// run it on a blocking thread.
pub fn list(root: &Path) -> Result<Listing, WalkError> {
    walk(root, |_| true)
}

/// Like [`list`], but only the files at or under `touched` (document
/// paths; `""` is the whole root), with every ignore file above them
/// honoured as for the whole walk: what the file watcher looks at after a
/// change. Folders elsewhere are not read.
pub fn list_touched(root: &Path, touched: &[String]) -> Result<Listing, WalkError> {
    if touched.iter().any(String::is_empty) {
        return list(root);
    }
    let touched = touched.to_vec();
    // A folder on the way to a touched path is read (its ignore files
    // count), and so is everything under a touched path; a file elsewhere
    // in those folders is not looked at.
    walk(root, move |rel| {
        touched
            .iter()
            .any(|t| at_or_under(rel, t) || at_or_under(t, rel))
    })
}

/// Whether `path` is `dir` or a path under it (`""` is the root).
fn at_or_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The walk both listings share: `keep` says, by document path, which
/// entries below the root are looked at (a folder not kept is not read).
fn walk(
    root: &Path,
    keep: impl Fn(&str) -> bool + Send + Sync + 'static,
) -> Result<Listing, WalkError> {
    let meta = std::fs::metadata(root).map_err(|source| WalkError::Root {
        path: root.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(WalkError::NotADirectory(root.to_owned()));
    }
    let mut builder = WalkBuilder::new(root);
    let base = root.to_owned();
    builder
        .standard_filters(true)
        .hidden(false)
        .require_git(false)
        .git_global(true)
        .follow_links(false)
        .add_custom_ignore_filename(CHORUS_IGNORE)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(move |entry| {
            let name = entry.file_name();
            if name == ".git" && entry.depth() > 0 || name == CHORUS_DIR && entry.depth() == 1 {
                return false;
            }
            if entry.depth() == 0 {
                return true;
            }
            // A name that is no document path is kept, to be listed as
            // skipped with the reason.
            let rel = entry.path().strip_prefix(&base).unwrap_or(entry.path());
            doc_path(rel).map_or(true, |path| keep(&path))
        });
    let mut listing = Listing::default();
    for entry in builder.build() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                // Unreadable directories and broken ignore files: said, not
                // fatal; the rest is still shared.
                listing.skipped.push(SkippedFile {
                    path: String::new(),
                    reason: err.to_string(),
                });
                continue;
            }
        };
        let Some(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let path = match doc_path(rel) {
            Ok(path) => path,
            Err(reason) => {
                listing.skipped.push(SkippedFile {
                    path: rel.to_string_lossy().into_owned(),
                    reason,
                });
                continue;
            }
        };
        if kind.is_symlink() {
            listing.skipped.push(SkippedFile {
                path,
                reason: "a symbolic link (not followed)".into(),
            });
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        match entry.metadata() {
            Ok(meta) => listing.files.push(LocalFile {
                path,
                abs: entry.path().to_owned(),
                size: meta.len(),
            }),
            Err(err) => listing.skipped.push(SkippedFile {
                path,
                reason: err.to_string(),
            }),
        }
    }
    Ok(listing)
}

/// The document path of `rel` (relative to the root), or why it has none.
pub fn doc_path(rel: &Path) -> Result<String, String> {
    let parts: Vec<&str> = rel
        .components()
        .map(|c| match c {
            std::path::Component::Normal(part) => part.to_str().ok_or("the name is not UTF-8"),
            _ => Err("not a plain relative path"),
        })
        .collect::<Result<_, _>>()?;
    let path = parts.join("/");
    validate_doc_path(&path)?;
    Ok(path)
}

/// What `put` sends for `file`: its text when it is UTF-8 without NUL bytes
/// and at most `max_file_bytes` long (and fits in a frame), else only its
/// size and why. A file over the cap is not read at all.
pub fn read_for_put(file: &LocalFile, max_file_bytes: u64) -> std::io::Result<PutContent> {
    let cap = max_file_bytes.min((DEFAULT_MAX_MESSAGE_BYTES - FRAME_SLACK) as u64);
    let handle = std::fs::File::open(&file.abs)?;
    let size = handle.metadata()?.len();
    if size > cap {
        return Ok(PutContent::TooLarge { size });
    }
    // The file may have grown since it was listed: never read past the cap.
    let mut bytes = Vec::with_capacity(size as usize);
    handle.take(cap + 1).read_to_end(&mut bytes)?;
    let size = bytes.len() as u64;
    if size > cap {
        return Ok(PutContent::TooLarge { size });
    }
    Ok(classify(bytes, cap))
}

/// Text, binary or too large, for a file's whole content. Text that JSON
/// escaping would blow past the frame limit (control characters are six
/// bytes each) counts as too large.
pub fn classify(bytes: Vec<u8>, cap: u64) -> PutContent {
    let size = bytes.len() as u64;
    if size > cap {
        return PutContent::TooLarge { size };
    }
    if bytes.contains(&0) {
        return PutContent::Binary { size };
    }
    match String::from_utf8(bytes) {
        Ok(text) => {
            let escaped = serde_json::to_string(&text).map_or(usize::MAX, |s| s.len());
            if escaped + FRAME_SLACK > DEFAULT_MAX_MESSAGE_BYTES {
                PutContent::TooLarge { size }
            } else {
                PutContent::Text { text }
            }
        }
        Err(_) => PutContent::Binary { size },
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn write(root: &Path, path: &str, bytes: &[u8]) {
        let abs = root.join(path);
        fs::create_dir_all(abs.parent().unwrap()).unwrap();
        fs::write(abs, bytes).unwrap();
    }

    fn paths(listing: &Listing) -> Vec<&str> {
        listing.files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn the_walk_honours_gitignore_ignore_and_chorusignore_but_never_shares_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, ".gitignore", b"*.log\nbuild/\n!keep.log\n");
        write(root, ".ignore", b"scratch.txt\n");
        write(root, ".chorusignore", b"secrets/\n!build/\n");
        write(root, "main.py", b"import helper\n");
        write(root, "helper.py", b"print('hi')\n");
        write(root, "debug.log", b"noise\n");
        write(root, "keep.log", b"kept by a negation\n");
        write(root, "build/out.txt", b"shared again by .chorusignore\n");
        write(root, "scratch.txt", b"ignored by .ignore\n");
        write(root, "secrets/key", b"ignored by .chorusignore\n");
        write(root, ".env.example", b"hidden files are shared\n");
        write(root, "src/nested/.gitignore", b"gen.rs\n");
        write(root, "src/nested/gen.rs", b"ignored below\n");
        write(root, "src/nested/lib.rs", b"fn f() {}\n");
        write(root, ".git/config", b"[core]\n");
        write(root, ".git/HEAD", b"ref: refs/heads/main\n");
        write(root, ".chorus/backup/main.py", b"a backup\n");
        let listing = list(root).unwrap();
        assert_eq!(
            paths(&listing),
            [
                ".chorusignore",
                ".env.example",
                ".gitignore",
                ".ignore",
                "build/out.txt",
                "helper.py",
                "keep.log",
                "main.py",
                "src/nested/.gitignore",
                "src/nested/lib.rs",
            ]
        );
        assert!(listing.skipped.is_empty(), "{:?}", listing.skipped);
        let main = listing.files.iter().find(|f| f.path == "main.py").unwrap();
        assert_eq!(main.size, 14);
        assert_eq!(main.abs, root.join("main.py"));
    }

    #[test]
    fn a_touched_listing_has_only_what_was_touched_with_the_ignore_files_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, ".gitignore", b"*.log\n");
        write(root, "pkg/.chorusignore", b"secret.py\n");
        write(root, "pkg/a.py", b"a\n");
        write(root, "pkg/b.py", b"not touched\n");
        write(root, "pkg/secret.py", b"ignored in pkg\n");
        write(root, "pkg/new/c.py", b"c\n");
        write(root, "pkg/new/run.log", b"ignored at the root\n");
        write(root, "other/d.py", b"not touched\n");
        let touched = |paths: &[&str]| {
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            let listing = list_touched(root, &paths).unwrap();
            listing
                .files
                .into_iter()
                .map(|f| f.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            touched(&["pkg/a.py", "pkg/secret.py", "pkg/new", "gone.py"]),
            ["pkg/a.py", "pkg/new/c.py"]
        );
        assert_eq!(touched(&[""]).len(), 6, "the root is everything");
    }

    #[test]
    fn a_nested_git_directory_is_left_out_too() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "vendor/lib/.git/HEAD", b"ref\n");
        write(dir.path(), "vendor/lib/a.c", b"int a;\n");
        assert_eq!(paths(&list(dir.path()).unwrap()), ["vendor/lib/a.c"]);
    }

    #[test]
    fn symbolic_links_are_skipped_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", b"outside the root\n");
        write(dir.path(), "a.txt", b"a\n");
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("dirlink")).unwrap();
        let listing = list(dir.path()).unwrap();
        assert_eq!(paths(&listing), ["a.txt"]);
        let skipped: Vec<&str> = listing.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(skipped, ["dirlink", "link"]);
    }

    #[test]
    fn a_name_that_is_not_utf8_is_skipped_with_the_reason() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        fs::write(dir.path().join(name), b"x").unwrap();
        let listing = list(dir.path()).unwrap();
        assert!(listing.files.is_empty());
        assert_eq!(listing.skipped.len(), 1);
        assert_eq!(listing.skipped[0].reason, "the name is not UTF-8");
    }

    #[test]
    fn the_root_must_be_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "f", b"x");
        assert!(matches!(
            list(&dir.path().join("f")),
            Err(WalkError::NotADirectory(_))
        ));
        assert!(matches!(
            list(&dir.path().join("missing")),
            Err(WalkError::Root { .. })
        ));
    }

    #[test]
    fn files_are_text_binary_or_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "text.py", "print('héllo')\n".as_bytes());
        write(root, "nul.bin", b"abc\0def");
        write(root, "latin1.txt", b"caf\xe9\n");
        write(root, "big.txt", &[b'x'; 101]);
        write(root, "edge.txt", &[b'y'; 100]);
        write(root, "empty.txt", b"");
        let listing = list(root).unwrap();
        let read = |path: &str| {
            let file = listing.files.iter().find(|f| f.path == path).unwrap();
            read_for_put(file, 100).unwrap()
        };
        assert_eq!(
            read("text.py"),
            PutContent::Text {
                text: "print('héllo')\n".into()
            }
        );
        assert_eq!(read("nul.bin"), PutContent::Binary { size: 7 });
        assert_eq!(read("latin1.txt"), PutContent::Binary { size: 5 });
        assert_eq!(read("big.txt"), PutContent::TooLarge { size: 101 });
        assert_eq!(
            read("edge.txt"),
            PutContent::Text {
                text: "y".repeat(100)
            }
        );
        assert_eq!(read("empty.txt"), PutContent::Text { text: "".into() });
    }

    #[test]
    fn text_that_escapes_past_a_frame_is_too_large() {
        let cap = DEFAULT_MAX_MESSAGE_BYTES as u64;
        // 200 000 control characters: 200 kB of text, 1.2 MB of JSON.
        let bytes = vec![1u8; 200_000];
        assert_eq!(classify(bytes, cap), PutContent::TooLarge { size: 200_000 });
    }

    #[test]
    fn document_paths_are_relative_with_slashes() {
        assert_eq!(doc_path(Path::new("a/b/c.rs")).unwrap(), "a/b/c.rs");
        assert!(doc_path(Path::new("/etc/passwd")).is_err());
        assert!(doc_path(Path::new("a/../b")).is_err());
        assert!(doc_path(Path::new("a\\b")).is_err());
    }
}
