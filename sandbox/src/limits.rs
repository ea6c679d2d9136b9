//! Resource limits applied to every sandboxed run.
//!
//! One `Limits` value covers the whole container: for compiled languages (Rust, C) the
//! compile step and the program share the same memory, pids, CPU, wall-clock and output
//! budget. The defaults leave room for that: `rustc` on a small program peaks near 75 MiB
//! and 0.3 s here, well inside 256 MiB and 10 s.

use std::time::Duration;

// The defaults, in the units people set them in; front ends (`chorus hub`'s
// flags) show and start from these, so there is one place to change them.

/// Wall-clock limit per run, in seconds.
pub const DEFAULT_WALL_CLOCK_SECS: u64 = 10;
/// Memory per run, in MiB.
pub const DEFAULT_MEMORY_MIB: i64 = 256;
/// Processes and threads per run.
pub const DEFAULT_PIDS: i64 = 128;
/// CPUs per run.
pub const DEFAULT_CPUS: f64 = 1.0;
/// Output bytes per run.
pub const DEFAULT_OUTPUT_BYTES: usize = 1024 * 1024;
/// Open files per run.
pub const DEFAULT_NOFILE: i64 = 256;
/// Size of each writable tmpfs, in MiB.
pub const DEFAULT_TMPFS_MIB: u64 = 64;
/// Runs at once across all sessions. Two cores on the reference machine:
/// more would only make every run slower.
pub const DEFAULT_MAX_CONCURRENT: usize = 2;

const MIB: u64 = 1024 * 1024;

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
            wall_clock: Duration::from_secs(DEFAULT_WALL_CLOCK_SECS),
            memory_bytes: DEFAULT_MEMORY_MIB * MIB as i64,
            pids: DEFAULT_PIDS,
            nano_cpus: (DEFAULT_CPUS * 1e9) as i64,
            output_bytes: DEFAULT_OUTPUT_BYTES,
            nofile: DEFAULT_NOFILE,
            tmpfs_bytes: DEFAULT_TMPFS_MIB * MIB,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented defaults (README, `chorus hub --help`), in the units
    /// Docker gets.
    #[test]
    fn default_limits() {
        assert_eq!(
            Limits::default(),
            Limits {
                wall_clock: Duration::from_secs(10),
                memory_bytes: 256 * 1024 * 1024,
                pids: 128,
                nano_cpus: 1_000_000_000,
                output_bytes: 1024 * 1024,
                nofile: 256,
                tmpfs_bytes: 64 * 1024 * 1024,
            }
        );
    }
}
