//! End-to-end tests: the real `chorus` binary (one hub, one proxy per
//! simulated editor) driven the way VS Code, Neovim and Helix drive it.
//!
//! Run with `cargo test --test e2e`; replay a random test's seed with
//! `CHORUS_SEEDS=<seed> cargo test --test e2e <test name>`. Process logs go
//! to `target/tmp/e2e-logs/<test>/`.

mod support;

mod access;
mod browser;
mod cluster;
mod durability;
mod helix;
mod helix_real;
mod hostile;
mod http;
mod hub_errors;
mod joining;
mod metrics;
mod moves;
mod neovim;
mod neovim_files;
mod neovim_lsp_ext;
mod neovim_random;
mod neovim_runs;
mod neovim_terminal;
mod random_typing;
mod run_diagnostics;
mod runs;
mod seeding;
mod stale_edits;
mod terminal;
mod terminal_proxy;
mod tls;
mod unicode;
mod watcher;
mod workspace;
mod workspace_caps;
