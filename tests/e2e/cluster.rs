//! Several hubs as one service (issue 18, ADR 0009): three `chorus hub`
//! processes on one real PostgreSQL database behind Debian's HAProxy
//! running `deploy/haproxy.cfg`, with editors' proxies spread over them.
//! Every test types tokens from several editors at once and checks that
//! every editor converges with every token exactly once: nothing
//! acknowledged lost, nothing applied twice.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::durability::{assert_each_token_once, test_session, type_token};
use crate::support::converge::assert_converged;
use crate::support::editor::{Editor, EditorKind, EditorOptions};
use crate::support::hub::{log_dir, Hub};
use crate::support::hub_client::http_get;

const DOC: &str = "ledger.txt";

/// Three hubs on one database, and HAProxy in front.
struct Service {
    test: String,
    database: String,
    ports: Vec<u16>,
    hubs: Vec<Option<Hub>>,
    _balancer: Child,
    /// `ws://127.0.0.1:PORT/`: HAProxy.
    url: String,
    log_dir: PathBuf,
}

fn free_port() -> u16 {
    chorus_testkit::stable_port()
}

impl Service {
    async fn start(test: &str) -> Option<Service> {
        let database = chorus_testkit::postgres()?;
        if !chorus_testkit::haproxy() {
            return None;
        }
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut hubs = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            hubs.push(Some(start_hub(test, &database, *port, i, 1).await));
        }
        let lb_port = free_port();
        let log_dir = log_dir(test);
        let log = std::fs::File::create(log_dir.join("haproxy.log")).expect("haproxy log");
        let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg");
        let balancer = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&config)
            .env("CHORUS_LB_BIND", format!("127.0.0.1:{lb_port}"))
            .env("CHORUS_HUB1", format!("127.0.0.1:{}", ports[0]))
            .env("CHORUS_HUB2", format!("127.0.0.1:{}", ports[1]))
            .env("CHORUS_HUB3", format!("127.0.0.1:{}", ports[2]))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start haproxy");
        // Up, and its first health checks passed (`rise 2` every 500 ms).
        let mut up = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tokio::net::TcpStream::connect(("127.0.0.1", lb_port))
                .await
                .is_ok()
                && http_get(lb_port, "/healthz").await.0 == 200
            {
                up = true;
                break;
            }
        }
        assert!(up, "HAProxy did not come up on {lb_port}");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        Some(Service {
            test: test.to_owned(),
            database,
            ports,
            hubs,
            _balancer: balancer,
            url: format!("ws://127.0.0.1:{lb_port}/"),
            log_dir,
        })
    }

    fn hub(&self, i: usize) -> &Hub {
        self.hubs[i].as_ref().expect("that hub is running")
    }

    fn any_hub(&self) -> &Hub {
        self.hubs.iter().flatten().next().expect("a hub is running")
    }

    /// Which running hub serves `session`: the last to log its claim.
    fn holder(&self, session: &str) -> usize {
        let mut best = None;
        for (i, hub) in self.hubs.iter().enumerate() {
            let Some(hub) = hub else { continue };
            let log = std::fs::read_to_string(&hub.log_path).unwrap_or_default();
            // Lines start with their time, so the latest sorts last.
            let last = log
                .lines()
                .rfind(|line| line.contains("session claimed") && line.contains(session));
            if let Some(line) = last {
                if best
                    .as_ref()
                    .is_none_or(|(_, seen): &(usize, String)| line > seen.as_str())
                {
                    best = Some((i, line.to_owned()));
                }
            }
        }
        best.map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no running hub claimed {session}"))
    }

    async fn editor(&self, kind: EditorKind, url: &str, session: &str, name: &str) -> Editor {
        let options = EditorOptions::at(kind, url, session, name);
        Editor::start_with(options, &self.log_dir).await
    }

    /// Editors joining `session` at the given hub URLs; the first seeds
    /// the document with `|`, the others open it, and all converge.
    async fn editors(&self, session: &str, who: &[(EditorKind, &str, &str)]) -> Vec<Editor> {
        let mut editors = Vec::new();
        for (kind, url, name) in who {
            editors.push(self.editor(*kind, url, session, name).await);
        }
        editors[0].open(DOC, "|");
        assert_converged(self.any_hub(), session, DOC, &[&editors[0]]).await;
        for editor in &editors[1..] {
            editor.open(DOC, "");
        }
        let all: Vec<&Editor> = editors.iter().collect();
        assert_converged(self.any_hub(), session, DOC, &all).await;
        editors
    }

    async fn restart(&mut self, i: usize, generation: usize) {
        let hub = start_hub(&self.test, &self.database, self.ports[i], i, generation).await;
        self.hubs[i] = Some(hub);
    }
}

async fn start_hub(test: &str, database: &str, port: u16, i: usize, generation: usize) -> Hub {
    let listen = format!("127.0.0.1:{port}");
    Hub::start_with(
        test,
        &format!("hub{}-{generation}.log", i + 1),
        &["--listen", &listen, "--database", database, "--open"],
    )
    .await
}

/// Each editor types `rounds` tokens at token boundaries, a few ms apart;
/// `during` runs at round `at`.
async fn type_rounds(
    editors: &[(&Editor, &str)],
    rounds: std::ops::Range<usize>,
    typed: &mut Vec<String>,
) {
    for i in rounds {
        for (editor, who) in editors {
            let token = format!("<{who}{i}>");
            type_token(editor, DOC, &token, i * 7 + who.len() * 3);
            typed.push(token);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The bug the issue reported: one editor on each of two hubs, typing at
/// once, diverged for good. Now the second hub relays to the first, and a
/// third editor through the balancer lands wherever it hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editors_on_different_hubs_are_one_session() {
    let Some(service) = Service::start("cluster_editors_on_different_hubs").await else {
        return;
    };
    let session = test_session("spread");
    let editors = service
        .editors(
            &session,
            &[
                (EditorKind::VsCode, &service.hub(0).url, "a"),
                (EditorKind::Neovim, &service.hub(1).url, "b"),
                (EditorKind::Helix, &service.url, "c"),
            ],
        )
        .await;
    let [a, b, c] = &editors[..] else {
        unreachable!()
    };
    let mut typed = Vec::new();
    type_rounds(&[(a, "a"), (b, "b"), (c, "c")], 0..120, &mut typed).await;
    let text = assert_converged(service.hub(2), &session, DOC, &[a, b, c]).await;
    assert_each_token_once(&text, &typed, "|");
    // Exactly one hub claimed it; the others relayed.
    let claims: usize = service
        .hubs
        .iter()
        .flatten()
        .map(|hub| {
            std::fs::read_to_string(&hub.log_path)
                .unwrap_or_default()
                .lines()
                .filter(|line| line.contains("session claimed") && line.contains(&session))
                .count()
        })
        .sum();
    assert_eq!(claims, 1, "one claim for the whole test");
}

/// `kill -9` of the hub holding the session while three editors type
/// through the balancer: another hub takes the session over, the proxies
/// reconnect by themselves, and every token is there once. Then the dead
/// hub comes back on its port and a fourth editor, hashed to it, is
/// relayed to the session's new hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_holder_loses_nothing_and_a_restart_rebalances() {
    let Some(mut service) = Service::start("cluster_kill_9").await else {
        return;
    };
    let session = test_session("failover");
    let lb = service.url.clone();
    let editors = service
        .editors(
            &session,
            &[
                (EditorKind::VsCode, &lb, "a"),
                (EditorKind::Neovim, &lb, "b"),
                (EditorKind::Helix, &lb, "c"),
            ],
        )
        .await;
    let [a, b, c] = &editors[..] else {
        unreachable!()
    };
    let editors = [(a, "a"), (b, "b"), (c, "c")];
    let mut typed = Vec::new();
    type_rounds(&editors, 0..40, &mut typed).await;
    let holder = service.holder(&session);
    let mut dead = service.hubs[holder].take().expect("running");
    dead.kill().await;
    type_rounds(&editors, 40..120, &mut typed).await;
    let text = assert_converged(service.any_hub(), &session, DOC, &[a, b, c]).await;
    assert_each_token_once(&text, &typed, "|");
    let new_holder = service.holder(&session);
    assert_ne!(new_holder, holder);

    service.restart(holder, 2).await;
    let d = service
        .editor(EditorKind::Neovim, &service.url, &session, "d")
        .await;
    d.open(DOC, "");
    assert_converged(service.hub(holder), &session, DOC, &[a, b, c, &d]).await;
    let editors = [(a, "a"), (b, "b"), (c, "c"), (&d, "d")];
    type_rounds(&editors, 120..160, &mut typed).await;
    let text = assert_converged(service.hub(holder), &session, DOC, &[a, b, c, &d]).await;
    assert_each_token_once(&text, &typed, "|");
    assert_eq!(
        service.holder(&session),
        new_holder,
        "the session stays where it went; the restarted hub relays"
    );
}

/// SIGTERM (a deploy) of the hub holding the session while editors type:
/// it hands the session over and exits cleanly, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_session_over_without_losing_a_keystroke() {
    let Some(mut service) = Service::start("cluster_sigterm").await else {
        return;
    };
    let session = test_session("drain");
    let lb = service.url.clone();
    let editors = service
        .editors(
            &session,
            &[
                (EditorKind::VsCode, &lb, "a"),
                (EditorKind::Neovim, &lb, "b"),
            ],
        )
        .await;
    let [a, b] = &editors[..] else { unreachable!() };
    let editors = [(a, "a"), (b, "b")];
    let mut typed = Vec::new();
    type_rounds(&editors, 0..40, &mut typed).await;
    let holder = service.holder(&session);
    let mut draining = service.hubs[holder].take().expect("running");
    draining.terminate();
    type_rounds(&editors, 40..100, &mut typed).await;
    let status = draining.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|status| status.success()),
        "the hub drained and exited cleanly: {status:?}\n{}",
        draining.log_tail(30)
    );
    let log = std::fs::read_to_string(&draining.log_path).unwrap_or_default();
    assert!(
        log.contains("session handed over"),
        "{}",
        draining.log_tail(30)
    );
    let text = assert_converged(service.any_hub(), &session, DOC, &[a, b]).await;
    assert_each_token_once(&text, &typed, "|");
    assert_ne!(service.holder(&session), holder);
}
