//! Per-session build caches: one Docker volume per session, mounted at `/cache` in that
//! session's project runs, so that the second `cargo run` reuses compiled dependencies.
//!
//! Invariants:
//! - A volume belongs to one session: its name is a hash of the session id
//!   ([`volume_name`]), and a run mounts only its own session's volume. A run without a
//!   session gets a throwaway volume that is removed when the run ends.
//! - Every cache volume carries [`SANDBOX_LABEL`](crate::SANDBOX_LABEL),
//!   [`CACHE_LABEL`] (the hash) and [`CREATED_LABEL`], so sweeps find them and nothing
//!   else.
//! - Volumes start owned by the owner of the image's `/cache` (Docker copies it onto a
//!   new volume), which the image makes the sandbox user; no root step is needed.
//! - Size: checked by the run's wrapper before the program starts (`payload.rs`),
//!   wiped when over `Limits::cache_bytes`.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptionsBuilder, RemoveVolumeOptionsBuilder};
use bollard::Docker;
use sha2::{Digest, Sha256};
use tracing::debug;

use crate::docker::SANDBOX_LABEL;

/// Label on cache volumes: the hash of the session id.
pub const CACHE_LABEL: &str = "org.chorus.sandbox.cache";
/// Label on cache volumes: the Unix time the volume was created.
pub const CREATED_LABEL: &str = "org.chorus.sandbox.created";
/// Cache volumes older than this are removed by the sweep at `connect`.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The volume of `session`: `chorus-cache-` and 24 hex digits of SHA-256 of the id, so
/// that any id gives a valid, fixed-length name that reveals nothing of it.
pub fn volume_name(session: &str) -> String {
    let digest = Sha256::digest(session.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("chorus-cache-{hex}")
}

/// Creates the volume if needed (creating an existing volume is a no-op in Docker).
pub async fn ensure(docker: &Docker, name: &str, now_unix: u64) -> Result<(), DockerError> {
    let hash = name.trim_start_matches("chorus-cache-").to_owned();
    let request = VolumeCreateRequest {
        name: Some(name.to_owned()),
        labels: Some(HashMap::from([
            (SANDBOX_LABEL.to_owned(), "1".to_owned()),
            (CACHE_LABEL.to_owned(), hash),
            (CREATED_LABEL.to_owned(), now_unix.to_string()),
        ])),
        ..Default::default()
    };
    docker.create_volume(request).await.map(drop)
}

/// Removes the volume; a missing volume is not an error. Fails while a container
/// still uses it.
pub async fn remove(docker: &Docker, name: &str) -> Result<(), DockerError> {
    let options = RemoveVolumeOptionsBuilder::default().force(true).build();
    match docker.remove_volume(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(err) => Err(err),
    }
}

/// The names of every cache volume, with its creation time (0 when unknown).
pub async fn list(docker: &Docker) -> Result<Vec<(String, u64)>, DockerError> {
    let filters = HashMap::from([("label".to_owned(), vec![CACHE_LABEL.to_owned()])]);
    let options = ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let response = docker.list_volumes(Some(options)).await?;
    Ok(response
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|volume| {
            let created = volume
                .labels
                .get(CREATED_LABEL)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0);
            (volume.name, created)
        })
        .collect())
}

/// Removes the cache volumes created before `now_unix - ttl`, except those in `keep`
/// (used recently by this executor). Returns how many went.
pub async fn sweep(
    docker: &Docker,
    ttl: Duration,
    now_unix: u64,
    keep: &[String],
) -> Result<usize, DockerError> {
    let mut removed = 0;
    for (name, created) in list(docker).await? {
        if created + ttl.as_secs() >= now_unix || keep.contains(&name) {
            continue;
        }
        // In use by a run right now: Docker refuses, and the next sweep retries.
        match remove(docker, &name).await {
            Ok(()) => removed += 1,
            Err(err) => debug!(cause = %err, volume = %name, "cache sweep: remove failed"),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_are_fixed_length_hashes_distinct_per_session() {
        let a = volume_name("session-a");
        assert_eq!(a.len(), "chorus-cache-".len() + 24);
        assert_eq!(a, volume_name("session-a"));
        assert_ne!(a, volume_name("session-b"));
        assert!(volume_name("../../etc x")
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
