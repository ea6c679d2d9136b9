//! Resource limits applied to every sandboxed run.
//!
//! One `Limits` value covers the whole container: for single files of compiled languages
//! (Rust, C) the compile step and the program share the same memory, pids, CPU,
//! wall-clock and output budget. The defaults leave room for that: `rustc` on a small
//! program peaks near 75 MiB and 0.3 s here, well inside 256 MiB and 10 s.
//!
//! Projects with a build step (Cargo, a run.toml `build`) get two more knobs, because
//! compiling dependencies is slower and hungrier than any small program: the build runs
//! under `compile_timeout` (in the container, TERM then KILL) and the run's wall clock
//! grows by the same amount, so the program itself still gets at least `wall_clock`;
//! and the container's memory is `build_memory_bytes` when that is larger than
//! `memory_bytes` (one cgroup holds both phases). Everything else (pids, CPU, output,
//! files) is shared by build and program as before.

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
/// Time a project's build step may take, in seconds (on top of the wall clock).
pub const DEFAULT_COMPILE_TIMEOUT_SECS: u64 = 120;
/// Memory of a run with a build step, in MiB. Measured on one core: a project using
/// serde, serde_json and rand builds under a 384 MiB cap but not under 256 MiB (the
/// kernel kills rustc on zerocopy), and one using tokio (full), clap (derive), regex,
/// serde and serde_json builds in 85 s without the cgroup reaching 512 MiB.
pub const DEFAULT_BUILD_MEMORY_MIB: i64 = 512;
/// Size of a session's build cache before it is wiped, in MiB.
pub const DEFAULT_CACHE_MIB: u64 = 1024;
/// Runs at once across all sessions. Two cores on the reference machine:
/// more would only make every run slower.
/// Bytes of input participants may send to one run while it goes (besides the request's
/// own `stdin`, which the message size caps).
pub const DEFAULT_INPUT_BYTES: usize = 1024 * 1024;
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
    /// Time a build step may take before it is stopped; the run's wall clock is extended
    /// by this much when there is a build step.
    pub compile_timeout: Duration,
    /// Memory of a run with a build step, when larger than `memory_bytes`.
    pub build_memory_bytes: i64,
    /// A session's build cache is wiped when a run starts and finds it larger than this
    /// (no filesystem quota is available on the engine's volumes, so this is checked,
    /// not enforced while a run writes).
    pub cache_bytes: u64,
    /// Bytes of [`crate::RunInput::Text`] one run accepts; the rest is refused with a
    /// message on the run's stderr and never reaches the program.
    pub input_bytes: usize,
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
            compile_timeout: Duration::from_secs(DEFAULT_COMPILE_TIMEOUT_SECS),
            build_memory_bytes: DEFAULT_BUILD_MEMORY_MIB * MIB as i64,
            cache_bytes: DEFAULT_CACHE_MIB * MIB,
            input_bytes: DEFAULT_INPUT_BYTES,
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
                compile_timeout: Duration::from_secs(120),
                build_memory_bytes: 512 * 1024 * 1024,
                cache_bytes: 1024 * 1024 * 1024,
                input_bytes: 1024 * 1024,
            }
        );
    }
}
