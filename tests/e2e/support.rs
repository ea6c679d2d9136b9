//! Shared machinery for the end-to-end tests: processes, the LSP client,
//! simulated editors, the raw hub client and convergence checks.

pub mod converge;
pub mod editor;
pub mod fake_hub;
pub mod helix;
pub mod hub;
pub mod hub_client;
pub mod lsp;
pub mod positions;
pub mod relay;

pub use converge::{assert_converged, wait_converged};
pub use editor::{Editor, EditorOptions};
pub use hub::Hub;
pub use hub_client::HubClient;

use std::time::Duration;

/// The seeds to run: `CHORUS_SEEDS=3,17` (decimal or `0x…`) replaces the
/// built-in list so that a failing seed can be replayed alone.
pub fn seeds(defaults: &[u64]) -> Vec<u64> {
    match std::env::var("CHORUS_SEEDS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|seed| {
                let seed = seed.trim();
                let parsed = match seed.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => seed.parse(),
                };
                parsed.unwrap_or_else(|err| panic!("CHORUS_SEEDS: bad seed {seed:?}: {err}"))
            })
            .collect(),
        _ => defaults.to_vec(),
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
