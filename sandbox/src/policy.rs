//! The lockdown every sandbox container gets: the whole of it, in one file
//! a security reviewer can read alone. [`locked_down`] builds it; the
//! executor (`docker.rs`) adds only the image, command, environment, labels
//! and stdio wiring on top and never sets a field this file sets (its tests
//! check that).
//!
//! The rules, and why:
//! - **Unprivileged user** `65534:65534` (`nobody:nogroup` in every
//!   Debian-based image): the program is not root even inside the container.
//! - **No capabilities**: `cap_drop ALL`, `privileged false`; nothing a
//!   root-owned process could do (mount, raw sockets, chown, ptrace) is left.
//! - **No new privileges**: `security_opt no-new-privileges`, so a setuid
//!   binary in the image cannot raise the user back up.
//! - **No network**: `network_mode none` and `network_disabled`; code can
//!   reach neither the hub's host, its LAN nor the internet.
//! - **Nothing of the host mounted**: no binds or devices (least of all the
//!   Docker socket); code arrives as a tar on stdin. The one volume is the
//!   session's own build cache at [`CACHE_DIR`] (a Docker volume, never a host
//!   path): it holds only what earlier runs of the same session wrote as the
//!   same unprivileged user (setuid bits there are inert under
//!   no-new-privileges), and another session's volume is never mounted (its
//!   name is a hash of the session id).
//! - **Read-only root filesystem**; the only writable places are two tmpfs,
//!   `/tmp` (mode 1777) and the work dir (0755), owned by the sandbox user,
//!   `nosuid,nodev`, `Limits::tmpfs_bytes` each. They are `exec` (off by
//!   default for tmpfs) because compiled programs run from `/tmp`, and are
//!   charged to the memory cgroup, so they cannot outgrow the memory limit.
//! - **Private IPC**, with a `/dev/shm` no bigger than the other scratch
//!   space: no shared memory with other containers or the host.
//! - **Memory** `Limits::memory_bytes`, with swap equal to it: no swap, so a
//!   memory hog is OOM-killed instead of thrashing the host.
//! - **Processes** `Limits::pids` (threads count): stops fork bombs.
//! - **CPU** `Limits::nano_cpus`: one core by default, so a busy loop cannot
//!   starve the hub.
//! - **Open files** `Limits::nofile`, soft and hard.
//! - **No engine-side restart or auto-remove**: the executor removes the
//!   container itself, after reading `OOMKilled` (auto-remove would race
//!   with that inspect).
//!
//! Enforced elsewhere, by the executor, because Docker has no server-side
//! knob for them: the wall clock and the output cap (both end in SIGKILL),
//! an in-container `timeout` backstop in case the executor dies, and the
//! labels and force-removal that make sure no container outlives its run.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, ResourcesUlimits};

use crate::payload::WORK_DIR;
use crate::Limits;

/// The unprivileged user programs run as: `nobody:nogroup` in every Debian-based image.
pub(crate) const SANDBOX_USER: &str = "65534:65534";

/// Where a session's build cache volume is mounted.
pub(crate) const CACHE_DIR: &str = "/cache";

/// A container body with every rule above set and nothing else; the
/// executor fills in the rest with `..locked_down(limits, cache)`. `cache`
/// is the name of the session's build cache volume, if the run gets one.
pub(crate) fn locked_down(limits: &Limits, cache: Option<&str>) -> ContainerCreateBody {
    let mut host_config = host_config(limits);
    host_config.mounts = cache.map(|volume| {
        vec![Mount {
            target: Some(CACHE_DIR.to_owned()),
            source: Some(volume.to_owned()),
            typ: Some(MountType::VOLUME),
            read_only: Some(false),
            ..Default::default()
        }]
    });
    ContainerCreateBody {
        user: Some(SANDBOX_USER.to_owned()),
        network_disabled: Some(true),
        host_config: Some(host_config),
        ..Default::default()
    }
}

fn host_config(limits: &Limits) -> HostConfig {
    let tmpfs_options = |mode: &str| {
        format!(
            "rw,exec,nosuid,nodev,size={},mode={mode},uid=65534,gid=65534",
            limits.tmpfs_bytes
        )
    };
    HostConfig {
        cap_drop: Some(vec!["ALL".to_owned()]),
        network_mode: Some("none".to_owned()),
        memory: Some(limits.memory_bytes),
        memory_swap: Some(limits.memory_bytes),
        pids_limit: Some(limits.pids),
        nano_cpus: Some(limits.nano_cpus),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([
            ("/tmp".to_owned(), tmpfs_options("1777")),
            (WORK_DIR.to_owned(), tmpfs_options("0755")),
        ])),
        ipc_mode: Some("private".to_owned()),
        shm_size: Some(i64::try_from(limits.tmpfs_bytes).unwrap_or(i64::MAX)),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".to_owned()),
            soft: Some(limits.nofile),
            hard: Some(limits.nofile),
        }]),
        privileged: Some(false),
        auto_remove: Some(false),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Every rule, spelled out: a change to the lockdown must change this
    /// test too, where a reviewer sees it.
    #[test]
    fn the_lockdown_is_exactly_these_rules() {
        let limits = Limits {
            wall_clock: Duration::from_secs(7),
            memory_bytes: 300 << 20,
            pids: 42,
            nano_cpus: 500_000_000,
            output_bytes: 1000,
            nofile: 99,
            tmpfs_bytes: 5 << 20,
            compile_timeout: Duration::from_secs(60),
            build_memory_bytes: 1 << 30,
            cache_bytes: 1 << 30,
            input_bytes: 1 << 20,
        };
        let tmpfs = |mode: &str| {
            format!("rw,exec,nosuid,nodev,size=5242880,mode={mode},uid=65534,gid=65534")
        };
        let expected = ContainerCreateBody {
            user: Some("65534:65534".to_owned()),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                cap_drop: Some(vec!["ALL".to_owned()]),
                privileged: Some(false),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                network_mode: Some("none".to_owned()),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([
                    ("/tmp".to_owned(), tmpfs("1777")),
                    ("/work".to_owned(), tmpfs("0755")),
                ])),
                ipc_mode: Some("private".to_owned()),
                shm_size: Some(5 << 20),
                memory: Some(300 << 20),
                memory_swap: Some(300 << 20),
                pids_limit: Some(42),
                nano_cpus: Some(500_000_000),
                ulimits: Some(vec![ResourcesUlimits {
                    name: Some("nofile".to_owned()),
                    soft: Some(99),
                    hard: Some(99),
                }]),
                auto_remove: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(locked_down(&limits, None), expected);
        // The cache volume adds exactly one mount, at /cache.
        let mut with_cache = expected;
        if let Some(host_config) = with_cache.host_config.as_mut() {
            host_config.mounts = Some(vec![Mount {
                target: Some("/cache".to_owned()),
                source: Some("chorus-cache-abc".to_owned()),
                typ: Some(MountType::VOLUME),
                read_only: Some(false),
                ..Default::default()
            }]);
        }
        assert_eq!(locked_down(&limits, Some("chorus-cache-abc")), with_cache);
    }
}
