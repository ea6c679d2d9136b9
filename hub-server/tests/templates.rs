//! The starter projects: each seeds a session that loads them, and each
//! runs as is in the real sandbox (CHORUS_FULL_TESTS=1 makes a missing
//! Docker engine a failure), printing what its `greeting` file says.

use std::time::Duration;

use chorus_hub::admin::{self, AdminError};
use chorus_hub::storage::{Database, Store};
use chorus_hub::templates::{self, TEMPLATES};
use chorus_sandbox::{DockerExecutor, Executor, ExecutorConfig, Limits, RunRequest, Stream};
use tokio::sync::{mpsc, oneshot};

fn files(template: &templates::Template) -> Vec<(String, String)> {
    template
        .files
        .iter()
        .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
        .collect()
}

fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-templates-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_template_seeds_only_a_session_without_files() {
    let dir = scratch("seed");
    let store = Store::open(&Database::Sqlite(dir.clone())).await.unwrap();
    let python = templates::find("Python").expect("names match in any case");
    admin::create(&store, "fresh").await.unwrap();
    assert_eq!(
        admin::seed(&store, "fresh", &files(python)).await.unwrap(),
        2
    );
    let mut loaded: Vec<(String, String)> = store
        .load_session("fresh")
        .await
        .unwrap()
        .into_iter()
        .map(|doc| {
            let text = doc.text().unwrap();
            (doc.path, text)
        })
        .collect();
    loaded.sort();
    let mut expected = files(python);
    expected.sort();
    assert_eq!(loaded, expected);
    // A second seed would overwrite what people may have changed since.
    let again = admin::seed(&store, "fresh", &files(python)).await;
    assert!(matches!(again, Err(AdminError::NotEmpty(_))), "{again:?}");
    let bad = admin::seed(&store, "other", &[("../x.py".into(), String::new())]).await;
    assert!(matches!(bad, Err(AdminError::BadPath { .. })), "{bad:?}");
    assert!(store.load_session("other").await.unwrap().is_empty());
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_template_runs_as_is() {
    if !chorus_testkit::docker() {
        return;
    }
    // rustc and gcc share the run's limits; a busy two-core machine needs
    // headroom.
    let config = ExecutorConfig {
        limits: Limits {
            wall_clock: Duration::from_secs(30),
            ..Limits::default()
        },
        ..ExecutorConfig::default()
    };
    let executor = DockerExecutor::connect(config)
        .await
        .expect("connect to Docker");
    for template in TEMPLATES {
        let (sender, mut output) = mpsc::channel(64);
        let (_cancel, cancelled) = oneshot::channel();
        let request = RunRequest {
            main: template.main.to_owned(),
            files: files(template),
            ..RunRequest::default()
        };
        let run = tokio::spawn(executor.run(request, sender, cancelled));
        let (mut stdout, mut stderr) = (String::new(), String::new());
        while let Some(chunk) = output.recv().await {
            match chunk.stream {
                Stream::Stdout => stdout.push_str(&chunk.data),
                Stream::Stderr => stderr.push_str(&chunk.data),
            }
        }
        let status = run.await.unwrap();
        assert_eq!(
            status.exit_code,
            Some(0),
            "{}: {status:?}\nstderr: {stderr}",
            template.name
        );
        assert_eq!(stdout, "Hello, Chorus!\n", "{}", template.name);
    }
}
