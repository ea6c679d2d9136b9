//! Resource limits applied to every sandboxed run.
//!
//! One `Limits` value covers the whole container: for compiled languages (Rust, C) the
//! compile step and the program share the same memory, pids, CPU, wall-clock and output
//! budget. The defaults leave room for that: `rustc` on a small program peaks near 75 MiB
//! and 0.3 s here, well inside 256 MiB and 10 s.

use std::time::Duration;

/// Caps enforced on one run. Each field maps onto one Docker host-config knob, except
/// `wall_clock` and `output_bytes`, which the executor enforces itself because Docker has
/// no server-side equivalent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time from container start until the executor SIGKILLs it.
    pub wall_clock: Duration,
    /// Memory cgroup limit; swap is set to the same value so the program cannot swap.
    pub memory_bytes: i64,
    /// Maximum number of processes and threads (stops fork bombs).
    pub pids: i64,
    /// CPU quota in billionths of a CPU (1_000_000_000 = one core).
    pub nano_cpus: i64,
    /// Bytes of stdout + stderr streamed before the run is killed and marked truncated.
    pub output_bytes: usize,
    /// `RLIMIT_NOFILE`, soft and hard.
    pub nofile: i64,
    /// Size of each writable tmpfs (`/tmp` and the work dir); the root fs is read-only.
    pub tmpfs_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_clock: Duration::from_secs(10),
            memory_bytes: 256 * 1024 * 1024,
            pids: 128,
            nano_cpus: 1_000_000_000,
            output_bytes: 1024 * 1024,
            nofile: 256,
            tmpfs_bytes: 64 * 1024 * 1024,
        }
    }
}
