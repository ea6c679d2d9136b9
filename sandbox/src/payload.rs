//! What goes into the container: the session's files as a tar, followed by the user's
//! stdin, both sent on the container's stdin.
//!
//! The root fs is read-only, and Docker refuses `upload_to_container` on a read-only
//! root fs, so the code travels on stdin instead. A small `sh` wrapper (the container's
//! command) reads exactly `CHORUS_TAR_BYTES` bytes into a tar and unpacks it into the
//! work dir, then `exec`s the language command, which inherits the container's stdin:
//! everything after the tar (the request's `stdin`, then live input) is the program's.
//! `head -c` never reads past its count, so no byte meant for the program is lost; the
//! program's end-of-file is the executor closing the attach connection's write half.

use std::path::{Component, Path};

use crate::SandboxError;

/// The work dir inside the container; a tmpfs.
pub const WORK_DIR: &str = "/work";

/// The container's command, run as `sh -c WRAPPER chorus ARGV...`.
///
/// `set -e` makes a failed unpack end the run with a non-zero exit instead of running
/// half a workspace. The tar is removed before the program starts so it does not count
/// against the tmpfs or confuse programs that list `/tmp`. `timeout -s KILL` is a backstop
/// for the executor's own wall clock (`CHORUS_KILL_AFTER` is a little longer): if the hub
/// dies mid-run, the program still cannot run forever.
///
/// `timeout` becomes PID 1 and is how an interrupt reaches the program: the executor
/// sends SIGINT to PID 1 (`docker kill --signal INT`), and `timeout` passes the signals
/// it catches (INT, TERM, HUP, QUIT) on to its child. `--foreground` keeps it from also
/// signalling its whole process group, which makes GNU `timeout` ignore the signal from
/// then on (a second interrupt would be lost); the backstop still ends everything,
/// because when PID 1 exits the kernel kills every process of the container.
///
/// With a build cache mounted (`CHORUS_CACHE_KIB` set), the cache is measured first
/// and wiped when over its cap: the engine's volumes have no quota, so the cap is
/// checked once per run, which the compile limit and the wall clock bound. An image
/// without a writable `/cache` (see `sandbox/images/README.md`) builds in `/tmp`.
pub const WRAPPER: &str = r#"set -e
head -c "$CHORUS_TAR_BYTES" > /tmp/.chorus.tar
tar -x -f /tmp/.chorus.tar -C /work --no-same-owner --no-same-permissions -m
rm -f /tmp/.chorus.tar
if [ -n "$CHORUS_CACHE_KIB" ]; then
  if [ -w /cache ]; then
    used=$(du -sk /cache 2>/dev/null | cut -f1)
    if [ "${used:-0}" -gt "$CHORUS_CACHE_KIB" ]; then
      find /cache -mindepth 1 -delete 2>/dev/null || true
      echo "chorus: the build cache had grown to ${used} KiB, over its ${CHORUS_CACHE_KIB} KiB cap, and was wiped" >&2
    fi
  else
    export CARGO_TARGET_DIR=/tmp/target CARGO_HOME=/tmp/cargo-home
  fi
fi
exec timeout --foreground -s KILL "$CHORUS_KILL_AFTER" "$@""#;

/// Checks that a workspace-relative path stays inside the work dir: not empty, not
/// absolute, no `..`, no NUL, no backslash (which a Windows editor might send).
pub fn validate_path(path: &str) -> Result<(), SandboxError> {
    let invalid = |why: &str| SandboxError::InvalidPath {
        path: path.to_owned(),
        reason: why.to_owned(),
    };
    if path.is_empty() {
        return Err(invalid("empty path"));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(invalid("contains NUL or backslash"));
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(invalid("contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(invalid("absolute path")),
        }
    }
    Ok(())
}

/// Builds the stdin payload: tar of `files`, then `stdin`. Returns the bytes and the
/// tar's length (for `CHORUS_TAR_BYTES`).
pub fn build(files: &[(String, String)], stdin: &str) -> Result<(Vec<u8>, usize), SandboxError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, text) in files {
        validate_path(path)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        // Readable by the sandbox user whatever `--no-same-permissions` does with umask.
        header.set_mode(0o644);
        header.set_mtime(0);
        builder
            .append_data(&mut header, path, text.as_bytes())
            .map_err(|err| SandboxError::Payload(err.to_string()))?;
    }
    let mut bytes = builder
        .into_inner()
        .map_err(|err| SandboxError::Payload(err.to_string()))?;
    let tar_len = bytes.len();
    bytes.extend_from_slice(stdin.as_bytes());
    Ok((bytes, tar_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_paths_that_escape() {
        for bad in ["", "/etc/passwd", "../x.py", "a/../../x", "a\\b", "a\0b"] {
            assert!(validate_path(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["main.py", "src/main.rs", "./a/b.c", "dir.with.dots/x"] {
            assert!(validate_path(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn payload_is_tar_then_stdin() {
        let files = vec![("src/a.py".to_owned(), "print(1)\n".to_owned())];
        let (bytes, tar_len) = build(&files, "input").unwrap();
        assert_eq!(&bytes[tar_len..], b"input");
        let mut archive = tar::Archive::new(&bytes[..tar_len]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["src/a.py"]);
    }

    #[test]
    fn payload_refuses_bad_paths() {
        let files = vec![("../evil".to_owned(), String::new())];
        assert!(build(&files, "").is_err());
    }
}
