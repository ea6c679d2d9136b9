//! The browser door (issue 19, ADR 0011): the pages and assets the hub
//! serves to browsers, and the rule that lets those pages open a WebSocket
//! to the hub that served them.
//!
//! The bundle is built from `web/` with npm and committed in
//! `hub-server/web-dist/`; it is embedded here, so that `cargo build`
//! needs no npm. `SOURCES.sha256` there records what it was built from,
//! and a test below holds the committed bundle to it.
//!
//! * `GET /` — what this hub is and how to join;
//! * `GET /s/SESSION` — the app page (`no-cache`: it names the assets);
//! * `GET /assets/NAME-HASH.EXT` — content-addressed, cached for a year,
//!   gzipped (at build time) for browsers that take it.
//!
//! Every page carries a strict Content-Security-Policy: only the hub's own
//! scripts, styles and WebSocket, no inline code, no framing.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const APP_JS: &[u8] = include_bytes!("../web-dist/app.js");
const APP_JS_GZ: &[u8] = include_bytes!("../web-dist/app.js.gz");
const APP_CSS: &[u8] = include_bytes!("../web-dist/style.css");
const APP_CSS_GZ: &[u8] = include_bytes!("../web-dist/style.css.gz");
const SESSION_HTML: &str = include_str!("../web-dist/session.html");
const INDEX_HTML: &str = include_str!("../web-dist/index.html");

/// `connect-src 'self'` covers `ws:`/`wss:` to the same host and port in
/// CSP 3 browsers; nothing else is allowed anywhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// An embedded asset under its content-addressed name.
struct Asset {
    name: String,
    body: &'static [u8],
    /// The same bytes gzipped at build time, for browsers that take gzip.
    gzipped: &'static [u8],
    content_type: &'static str,
}

/// `stem-HASH.ext`: the name changes whenever the bytes do, so browsers
/// may keep an asset forever and a new hub is never served an old one.
fn hashed(
    stem: &str,
    ext: &str,
    (body, gzipped): (&'static [u8], &'static [u8]),
    content_type: &'static str,
) -> Asset {
    let digest = Sha256::digest(body);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Asset {
        name: format!("{stem}-{hex}.{ext}"),
        body,
        gzipped,
        content_type,
    }
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        hashed(
            "app",
            "js",
            (APP_JS, APP_JS_GZ),
            "text/javascript; charset=utf-8",
        ),
        hashed(
            "style",
            "css",
            (APP_CSS, APP_CSS_GZ),
            "text/css; charset=utf-8",
        ),
    ]
});

fn fill(template: &str, session: &str) -> String {
    template
        .replace("{{APP_JS}}", &ASSETS[0].name)
        .replace("{{APP_CSS}}", &ASSETS[1].name)
        .replace("{{SESSION}}", session)
}

fn page(body: String) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// Answers a plain (not WebSocket) GET for `path`, or `None` when the
/// path is not the browser door's. `gzip`: the client accepts it.
pub fn serve(path: &str, gzip: bool) -> Option<Response> {
    if path == "/" {
        return Some(page(fill(INDEX_HTML, "")));
    }
    if path == "/favicon.ico" {
        // Browsers ask for it on every page; "nothing" beats a logged 404.
        return Some(StatusCode::NO_CONTENT.into_response());
    }
    if let Some(session) = path.strip_prefix("/s/") {
        let session = session.trim_end_matches('/');
        // Validated before it is written into the page: only
        // `[A-Za-z0-9._-]`, nothing HTML or a URL would read specially.
        return Some(match chorus_protocol::wire::validate_session_id(session) {
            Ok(()) => page(fill(SESSION_HTML, session)),
            Err(why) => (StatusCode::NOT_FOUND, format!("{why}\n")).into_response(),
        });
    }
    let name = path.strip_prefix("/assets/")?;
    let asset = ASSETS.iter().find(|asset| asset.name == name)?;
    let (body, encoding) = if gzip {
        (asset.gzipped, "gzip")
    } else {
        (asset.body, "identity")
    };
    Some(
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CONTENT_ENCODING, encoding),
                (header::VARY, "Accept-Encoding"),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response(),
    )
}

/// Whether `Accept-Encoding` allows gzip (not refused with `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "") == "q=0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Whether the `Origin` of an upgrade is the hub's own: a page the hub
/// served itself (ADR 0011). Only where the browser's idea of the origin
/// cannot be an attacker's: over TLS (a page under another name would
/// have failed the certificate check to get here), or at an IP address or
/// `localhost` (which DNS rebinding cannot take over). A plain-HTTP hub
/// reached by a DNS name must list its origin with `--allow-origin`.
pub fn is_own_origin(headers: &HeaderMap, tls: bool) -> bool {
    let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(text),
        headers.get(header::HOST).and_then(text),
    ) else {
        return false;
    };
    let scheme = if tls { "https" } else { "http" };
    if !origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")) {
        return false;
    }
    tls || is_address_or_localhost(host)
}

fn text(value: &HeaderValue) -> Option<&str> {
    value.to_str().ok()
}

/// `host[:port]` where host is an IP literal (`[::1]` too) or `localhost`.
fn is_address_or_localhost(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    fn headers(origin: &str, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        headers
    }

    #[test]
    fn only_the_hubs_own_unrebindable_origin_is_its_own() {
        let own = |origin: &str, host: &str, tls: bool| is_own_origin(&headers(origin, host), tls);
        assert!(own("http://127.0.0.1:7420", "127.0.0.1:7420", false));
        assert!(own("http://[::1]:7420", "[::1]:7420", false));
        assert!(own("http://localhost:7420", "localhost:7420", false));
        assert!(own(
            "https://chorus.example.com",
            "chorus.example.com",
            true
        ));
        // Another port, scheme or host is another origin.
        assert!(!own("http://127.0.0.1:8080", "127.0.0.1:7420", false));
        assert!(!own("https://127.0.0.1:7420", "127.0.0.1:7420", false));
        assert!(!own("http://evil.example:7420", "127.0.0.1:7420", false));
        // A name over plain HTTP could be rebound to this hub's address.
        assert!(!own("http://evil.example:7420", "evil.example:7420", false));
        assert!(!own("null", "127.0.0.1:7420", false));
        assert!(!is_own_origin(&HeaderMap::new(), false));
    }

    #[test]
    fn pages_are_not_cached_and_assets_are_cached_for_good() {
        let page = serve("/s/demo", true).expect("the session page");
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(page.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        let asset = serve(&format!("/assets/{}", ASSETS[0].name), true).expect("the app");
        assert_eq!(
            asset.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(asset.headers()[header::CONTENT_ENCODING], "gzip");
        assert!(serve("/assets/app.js", true).is_none(), "only hashed names");
        assert_eq!(
            serve("/s/<script>", true).unwrap().status(),
            StatusCode::NOT_FOUND
        );
        assert!(serve("/nothing", true).is_none());
    }

    #[test]
    fn gzip_is_served_only_to_those_who_take_it() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            accepts_gzip(&headers)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, gzip;q=0.8"));
        assert!(!with("br"));
        assert!(!with("gzip;q=0"));
        assert!(!accepts_gzip(&HeaderMap::new()));
        let plain = serve(&format!("/assets/{}", ASSETS[0].name), false).expect("the app");
        assert_eq!(plain.headers()[header::CONTENT_ENCODING], "identity");
    }

    fn sha256_hex(path: &Path) -> String {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read web/src") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                files_under(&path, out);
            } else {
                out.push(path);
            }
        }
    }

    /// The bundle is committed so `cargo build` needs no npm; this holds it
    /// to its sources: every file of `web/src`, the package files and the
    /// build script must be listed in `SOURCES.sha256` with their current
    /// hash, and the outputs with theirs (scripts/test.sh rebuilds with npm
    /// and checks the rebuilt bundle is byte-identical).
    #[test]
    fn the_committed_bundle_matches_its_sources() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let stamp = std::fs::read_to_string(root.join("hub-server/web-dist/SOURCES.sha256"))
            .expect("hub-server/web-dist/SOURCES.sha256");
        let rebuild =
            "rebuild it: (cd web && npm ci && npm run build), and commit hub-server/web-dist";
        let mut listed = BTreeSet::new();
        for line in stamp.lines() {
            let (hash, path) = line.split_once("  ").expect("`HASH  PATH` lines");
            assert_eq!(
                sha256_hex(&root.join(path)),
                hash,
                "{path} changed since the bundle was built; {rebuild}"
            );
            listed.insert(path.to_owned());
        }
        let mut sources = Vec::new();
        files_under(&root.join("web/src"), &mut sources);
        for source in sources {
            let relative = source.strip_prefix(&root).expect("under the root");
            let relative = relative.to_string_lossy().replace('\\', "/");
            assert!(
                listed.contains(&relative),
                "{relative} is not among the bundle's sources; {rebuild}"
            );
        }
        for required in [
            "web/package.json",
            "web/package-lock.json",
            "web/build.mjs",
            "hub-server/web-dist/app.js",
            "hub-server/web-dist/app.js.gz",
            "hub-server/web-dist/style.css",
            "hub-server/web-dist/style.css.gz",
        ] {
            assert!(listed.contains(required), "{required} is not in the stamp");
        }
    }
}
