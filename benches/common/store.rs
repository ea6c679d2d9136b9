//! Where the benchmarked hub keeps sessions: `CHORUS_BENCH_STORE` =
//! `memory` (default), `sqlite` (a fresh directory under $TMPDIR) or
//! `postgres` (the database in `CHORUS_TEST_POSTGRES`, which
//! `scripts/ensure-postgres.sh` prints). The hub is always `--open`: the
//! benchmarks measure editing, not joining.

pub fn hub_store_args() -> Vec<String> {
    let store = std::env::var("CHORUS_BENCH_STORE").unwrap_or_else(|_| "memory".into());
    let mut args = match store.as_str() {
        "memory" => vec!["--in-memory".to_owned()],
        "sqlite" => {
            let dir =
                std::env::temp_dir().join(format!("chorus-bench-data-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            vec!["--data".to_owned(), dir.to_string_lossy().into_owned()]
        }
        "postgres" => {
            let url = std::env::var("CHORUS_TEST_POSTGRES")
                .expect("CHORUS_BENCH_STORE=postgres needs CHORUS_TEST_POSTGRES=postgres://…");
            vec!["--database".to_owned(), url]
        }
        other => panic!("CHORUS_BENCH_STORE must be memory, sqlite or postgres, not {other:?}"),
    };
    args.push("--open".to_owned());
    eprintln!("hub storage: {store}");
    args
}
