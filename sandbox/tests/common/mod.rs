//! Helpers shared by the integration tests against the real engine (`docker.rs`,
//! `terminal.rs`): the small limits they run under, how they get an executor (or skip
//! without Docker, see chorus-testkit), and the checks that nothing was left behind.

// Each test binary compiles this module and uses its own subset of it.
#![allow(dead_code)]

use std::time::Duration;

use chorus_sandbox::{DockerExecutor, ExecutorConfig, Limits};

pub fn test_limits() -> Limits {
    Limits {
        wall_clock: Duration::from_secs(5),
        memory_bytes: 128 * 1024 * 1024,
        pids: 64,
        nano_cpus: 1_000_000_000,
        output_bytes: 64 * 1024,
        nofile: 64,
        tmpfs_bytes: 16 * 1024 * 1024,
        // Cold Cargo builds of the project tests share two cores with the rest of
        // the suite; the default compile limit is sized for one build at a time.
        compile_timeout: Duration::from_secs(300),
        build_memory_bytes: 512 * 1024 * 1024,
        cache_bytes: 1024 * 1024 * 1024,
        input_bytes: 1024 * 1024,
    }
}

/// `None` (the test skips) when there is no engine and this is not the full run.
pub async fn connect(config: ExecutorConfig) -> Option<DockerExecutor> {
    if !chorus_testkit::docker() {
        return None;
    }
    match DockerExecutor::connect(config).await {
        Ok(executor) => Some(executor),
        Err(err) => panic!(
            "the sandbox tests need a running Docker engine and the local image; \
             run `bash sandbox/scripts/ensure-docker.sh` first. Cause: {err}"
        ),
    }
}

/// [`connect`] with these limits and this many concurrent containers.
pub async fn executor_with(limits: Limits, max_concurrent: usize) -> Option<DockerExecutor> {
    connect(ExecutorConfig {
        limits,
        max_concurrent,
        ..ExecutorConfig::default()
    })
    .await
}

/// A bare engine client, for setting up what an earlier hub would have left behind.
pub async fn engine() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults()
        .expect("docker client")
        .negotiate_version()
        .await
        .expect("Docker engine not reachable: run sandbox/scripts/ensure-docker.sh")
}

pub async fn assert_no_containers(executor: &DockerExecutor) {
    let left = executor.list_containers().await.expect("list containers");
    assert!(left.is_empty(), "containers left behind: {left:?}");
}

/// Waits until the container `name` is gone (another test's `connect` may be the one
/// removing it, so give that a moment), removes it if it is not, and fails then.
pub async fn assert_swept(docker: &bollard::Docker, name: &str, what: &str) {
    let mut still_there = true;
    for _ in 0..50 {
        still_there = docker.inspect_container(name, None).await.is_ok();
        if !still_there {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if still_there {
        let force = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
            .force(true)
            .build();
        docker.remove_container(name, Some(force)).await.ok();
    }
    assert!(!still_there, "connect did not sweep {what}");
}
