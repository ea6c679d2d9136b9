//! Project detection: from a request's `main`, `files`, `mode`, `language` and `command`,
//! decide what runs and why, and refuse up front what cannot run (a dependency that is
//! not baked into the image, a broken project file). Pure: no IO, no clock.
//!
//! The rules, in order:
//! 1. `command` given: `sh -c COMMAND` in the work dir, whatever else is there.
//! 2. `language` given: that language's single-file rule (`languages.rs`).
//! 3. The nearest enclosing project of `main`: walking up from `main`'s directory, the
//!    first directory holding a project file that fits `main` decides. In one directory
//!    the order is `.chorus/run.toml`, `Cargo.toml`, `package.json`, `pyproject.toml` or
//!    `requirements.txt`, `Makefile`. A project file for another language than `main`'s
//!    is passed over (a Python script in a Rust repository runs as Python), and a
//!    `main` of no known language fits every project file.
//! 4. Otherwise the single-file rule of `main`'s extension.
//!
//! Invariant: every command is a fixed `sh -c` script; what comes from the session
//! (paths, script lines, the user's command) reaches it only through environment
//! variables and `"$@"`, never by splicing text into the script.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use crate::baked::{normalise_python_name, Baked, HOW_TO_ADD};
use crate::languages::{resolve, Language};
use crate::{RunMode, RunRequest, SandboxError};

/// Where a project may say how it runs, relative to the project's directory.
pub const RUN_TOML: &str = ".chorus/run.toml";

/// What a run will execute, decided before any container exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// One line for the run's header: the command and why it was chosen.
    pub summary: String,
    /// The image to run in.
    pub image: String,
    /// The command, run in the work dir with the user's arguments already appended.
    pub argv: Vec<String>,
    /// Variables the command reads (see the module invariant).
    pub env: Vec<(String, String)>,
    /// What kind of project it is, which decides the build cache's layout.
    pub kind: Kind,
    /// Workspace-relative directory of the project (`""` for the root), against which a
    /// toolchain's relative paths in error messages are resolved.
    pub project_dir: String,
    /// Whether the command has a build step run under the compile limit.
    pub builds: bool,
    /// The project's own compile limit (`compile_timeout_secs` in run.toml).
    pub compile_timeout: Option<Duration>,
}

/// The kinds of run the detection knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cargo,
    Node,
    Python,
    Make,
    RunToml,
    Command,
    /// A single file by today's language rules.
    File,
}

/// `.chorus/run.toml`: how a project runs. Every command is a `sh -c` line run in the
/// directory that holds `.chorus/`, with the user's arguments appended as `"$@"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunToml {
    /// Run before the mode's command, under the compile limit (optional).
    build: Option<String>,
    /// The command of run mode (required unless only `test` is ever used).
    run: Option<String>,
    /// The command of test mode.
    test: Option<String>,
    /// The command of release mode; run mode's when absent.
    release: Option<String>,
    /// The compile limit for `build`, in seconds, instead of the executor's default.
    compile_timeout_secs: Option<u64>,
}

/// Runs a build step under the compile limit, then the program. `chorus_build` stops
/// the build at `$CHORUS_COMPILE_SECS` (TERM, then KILL two seconds later) and says so
/// in a line the executor recognises (`COMPILE_STOPPED`). `timeout` exits 124 when its
/// TERM ended the build, 137 when its KILL did, but 137 is also what a build the
/// kernel's OOM killer took exits with, so that one is told apart by the time spent.
const BUILD_PRELUDE: &str = r#"chorus_build() {
  started=$(date +%s)
  timeout -k 2 "$CHORUS_COMPILE_SECS" "$@" && return 0
  status=$?
  if [ "$status" = 124 ] || { [ "$status" = 137 ] &&
      [ $(( $(date +%s) - started )) -ge "$CHORUS_COMPILE_SECS" ]; }; then
    echo "chorus: the build was stopped at the compile limit ($CHORUS_COMPILE_SECS s)" >&2
  fi
  exit "$status"
}
cd "$CHORUS_PROJECT_DIR"
if [ -n "$CHORUS_STALE_LOCK" ]; then rm -f "$CHORUS_STALE_LOCK"; fi
"#;

/// The start of the line `BUILD_PRELUDE` prints when it stops a build.
pub const COMPILE_STOPPED: &str = "chorus: the build was stopped at the compile limit";

/// Decides what `request` runs, or why it cannot.
pub fn plan(
    request: &RunRequest,
    languages: &[Language],
    baked: &Baked,
) -> Result<Planned, SandboxError> {
    crate::payload::validate_path(&request.main)?;
    if !request.files.iter().any(|(path, _)| path == &request.main) {
        return Err(SandboxError::MainMissing(request.main.clone()));
    }
    let default_image = languages
        .first()
        .map(|language| language.image.clone())
        .unwrap_or_else(|| crate::DEFAULT_IMAGE.to_owned());
    if let Some(command) = &request.command {
        if command.trim().is_empty() {
            return Err(SandboxError::EmptyCommand);
        }
        let mut argv = sh_script("exec sh -c \"$CHORUS_COMMAND\" chorus-command \"$@\"");
        argv.extend(request.args.iter().cloned());
        return Ok(Planned {
            summary: format!("sh -c {} (command given)", quote_for_display(command)),
            image: default_image,
            argv,
            env: vec![("CHORUS_COMMAND".into(), command.clone())],
            kind: Kind::Command,
            project_dir: String::new(),
            builds: false,
            compile_timeout: None,
        });
    }
    if request.language.is_none() {
        let files: BTreeSet<&str> = request.files.iter().map(|(p, _)| p.as_str()).collect();
        let main_language = resolve(languages, None, &request.main).map(|l| l.name.as_str());
        // With per-language images (sandbox/images/README.md), a project runs in its
        // toolchain's image; the others in the image of `main`'s language, or the first.
        let image_of = |kind: Kind| {
            let name = match kind {
                Kind::Cargo => Some("rust"),
                Kind::Node => Some("javascript"),
                Kind::Python => Some("python"),
                _ => main_language,
            };
            name.and_then(|name| resolve(languages, Some(name), ""))
                .map_or_else(|| default_image.clone(), |language| language.image.clone())
        };
        for dir in ancestors(&request.main) {
            if let Some(planned) =
                project_in(&dir, request, &files, main_language, baked, &image_of)?
            {
                return Ok(planned);
            }
        }
    }
    single_file(request, languages)
}

/// The directories enclosing `main`, nearest first, ending with the root (`""`).
fn ancestors(main: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut path = main.trim_start_matches("./");
    while let Some((dir, _)) = path.rsplit_once('/') {
        dirs.push(dir.to_owned());
        path = dir;
    }
    dirs.push(String::new());
    dirs
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// `" in demo/"`, or nothing for the root: the tail of a summary.
fn where_(dir: &str) -> String {
    if dir.is_empty() {
        String::new()
    } else {
        format!(" in {dir}/")
    }
}

/// `main` relative to the project directory `dir`.
fn relative_to(dir: &str, main: &str) -> String {
    let main = main.trim_start_matches("./");
    if dir.is_empty() {
        return main.to_owned();
    }
    main.strip_prefix(&format!("{dir}/"))
        .unwrap_or(main)
        .to_owned()
}

fn text_of<'a>(request: &'a RunRequest, path: &str) -> &'a str {
    request
        .files
        .iter()
        .find(|(candidate, _)| candidate == path)
        .map(|(_, text)| text.as_str())
        .unwrap_or("")
}

/// The project `dir` holds for `main`, if any.
fn project_in(
    dir: &str,
    request: &RunRequest,
    files: &BTreeSet<&str>,
    main_language: Option<&str>,
    baked: &Baked,
    image_of: &dyn Fn(Kind) -> String,
) -> Result<Option<Planned>, SandboxError> {
    let main = request.main.trim_start_matches("./");
    let has = |name: &str| files.contains(join(dir, name).as_str());
    // A project file fits when `main` is of its language, of none we know, or is the
    // project file itself.
    let fits = |language: &str, markers: &[&str]| {
        main_language.is_none_or(|main_language| main_language == language)
            || markers.iter().any(|marker| join(dir, marker) == main)
    };
    let base = |kind: Kind, summary: String, script: &str, env: Vec<(String, String)>| {
        let mut argv = sh_script(script);
        argv.extend(request.args.iter().cloned());
        let mut env = env;
        env.push(("CHORUS_PROJECT_DIR".into(), join("/work", dir)));
        Planned {
            summary,
            image: image_of(kind),
            argv,
            env,
            kind,
            project_dir: dir.to_owned(),
            builds: false,
            compile_timeout: None,
        }
    };

    if has(RUN_TOML) {
        return run_toml(dir, request, base).map(Some);
    }
    if has("Cargo.toml") && fits("rust", &["Cargo.toml", "Cargo.lock"]) {
        check_cargo(dir, request, files, baked)?;
        let mut planned = cargo(dir, main, request.mode, base);
        if let Some((lock, pinned)) = stale_cargo_lock(dir, request, files, baked) {
            // Offline, cargo cannot honour a lock that pins versions the image does not
            // vendor; the run's copy of it goes (the session's file stays as it is).
            let trimmed = planned.summary.trim_end_matches(')').to_owned();
            planned.summary = format!(
                "{trimmed}; {lock} pins {pinned}, which the image does not vendor, so it is set aside for this run)"
            );
            planned
                .env
                .push(("CHORUS_STALE_LOCK".into(), join("/work", &lock)));
        }
        return Ok(Some(planned));
    }
    if has("package.json") && fits("javascript", &["package.json"]) {
        return node(dir, request, main, baked, base).map(Some);
    }
    let python_marker = ["pyproject.toml", "requirements.txt"]
        .into_iter()
        .find(|marker| has(marker));
    if let Some(marker) = python_marker {
        if fits("python", &["pyproject.toml", "requirements.txt"]) {
            check_python(dir, request, baked)?;
            return Ok(Some(python(dir, main, marker, request.mode, base)));
        }
    }
    if let Some(makefile) = ["Makefile", "makefile", "GNUmakefile"]
        .into_iter()
        .find(|name| has(name))
    {
        let target = match request.mode {
            RunMode::Test => "test",
            RunMode::Run | RunMode::Release => "run",
        };
        let summary = format!(
            "make {target} ({makefile}{}){}",
            where_(dir),
            release_note(request.mode)
        );
        let script = "cd \"$CHORUS_PROJECT_DIR\" && exec make \"$CHORUS_TARGET\" \"$@\"";
        return Ok(Some(base(
            Kind::Make,
            summary,
            script,
            vec![("CHORUS_TARGET".into(), target.into())],
        )));
    }
    Ok(None)
}

fn run_toml(
    dir: &str,
    request: &RunRequest,
    base: impl Fn(Kind, String, &str, Vec<(String, String)>) -> Planned,
) -> Result<Planned, SandboxError> {
    let path = join(dir, RUN_TOML);
    let config: RunToml = toml::from_str(text_of(request, &path))
        .map_err(|err| SandboxError::Project(format!("{path}: {}", err.message())))?;
    let (key, command, note) = match request.mode {
        RunMode::Run => ("run", config.run.as_ref(), ""),
        RunMode::Test => ("test", config.test.as_ref(), ""),
        RunMode::Release => match &config.release {
            Some(release) => ("release", Some(release), ""),
            None => (
                "run",
                config.run.as_ref(),
                "; no `release` there, so a normal run",
            ),
        },
    };
    let Some(command) = command else {
        return Err(SandboxError::Project(format!(
            "{path} has no `{key}` command"
        )));
    };
    let mut env = vec![("CHORUS_COMMAND".into(), command.clone())];
    let (summary, script) = match &config.build {
        Some(build) => {
            env.push(("CHORUS_BUILD".into(), build.clone()));
            (
                format!(
                    "{} then {} ({key} in {path}{note})",
                    quote_for_display(build),
                    quote_for_display(command)
                ),
                format!(
                    "{BUILD_PRELUDE}chorus_build sh -c \"$CHORUS_BUILD\"\nexec sh -c \"$CHORUS_COMMAND\" chorus-run \"$@\""
                ),
            )
        }
        None => (
            format!("{} ({key} in {path}{note})", quote_for_display(command)),
            "cd \"$CHORUS_PROJECT_DIR\" && exec sh -c \"$CHORUS_COMMAND\" chorus-run \"$@\""
                .to_owned(),
        ),
    };
    let mut planned = base(Kind::RunToml, summary, &script, env);
    planned.builds = config.build.is_some();
    planned.compile_timeout = config.compile_timeout_secs.map(Duration::from_secs);
    Ok(planned)
}

fn cargo(
    dir: &str,
    main: &str,
    mode: RunMode,
    base: impl Fn(Kind, String, &str, Vec<(String, String)>) -> Planned,
) -> Planned {
    // `cargo run` needs to know which binary when `main` is not the default one. The
    // flags reach the script through one variable that the shell splits into words,
    // so a name with white space (never a valid target name) is left to cargo's default.
    let relative = relative_to(dir, main);
    let target_name = |rest: &str| {
        rest.strip_suffix("/main.rs")
            .or(rest.strip_suffix(".rs"))
            .filter(|name| !name.contains('/') && !name.contains(char::is_whitespace))
            .map(str::to_owned)
    };
    let target = if let Some(name) = relative.strip_prefix("src/bin/").and_then(target_name) {
        vec!["--bin".to_owned(), name]
    } else if let Some(name) = relative.strip_prefix("examples/").and_then(target_name) {
        vec!["--example".to_owned(), name]
    } else {
        Vec::new()
    };
    let mut flags = vec!["--offline".to_owned()];
    if mode == RunMode::Release {
        flags.push("--release".to_owned());
    }
    flags.extend(target);
    let flags_text = flags.join(" ");
    let (summary, script) = match mode {
        RunMode::Test => (
            format!("cargo test {flags_text} (Cargo.toml{})", where_(dir)),
            // `--no-run` builds the tests under the compile limit; the run recompiles nothing.
            format!("{BUILD_PRELUDE}chorus_build cargo test $CHORUS_CARGO_FLAGS --no-run\nexec cargo test $CHORUS_CARGO_FLAGS -- \"$@\""),
        ),
        RunMode::Run | RunMode::Release => (
            format!("cargo run {flags_text} (Cargo.toml{})", where_(dir)),
            format!("{BUILD_PRELUDE}chorus_build cargo build $CHORUS_CARGO_FLAGS\nexec cargo run -q $CHORUS_CARGO_FLAGS -- \"$@\""),
        ),
    };
    let mut planned = base(
        Kind::Cargo,
        summary,
        &script,
        vec![("CHORUS_CARGO_FLAGS".into(), flags_text)],
    );
    planned.builds = true;
    planned
}

fn node(
    dir: &str,
    request: &RunRequest,
    main: &str,
    baked: &Baked,
    base: impl Fn(Kind, String, &str, Vec<(String, String)>) -> Planned,
) -> Result<Planned, SandboxError> {
    let path = join(dir, "package.json");
    let manifest: serde_json::Value = serde_json::from_str(text_of(request, &path))
        .map_err(|err| SandboxError::Project(format!("{path}: {err}")))?;
    let mut sections = vec!["dependencies"];
    if request.mode == RunMode::Test {
        sections.push("devDependencies");
    }
    for section in sections {
        let Some(dependencies) = manifest.get(section).and_then(|d| d.as_object()) else {
            continue;
        };
        for (name, version) in dependencies {
            let local = version
                .as_str()
                .is_some_and(|v| v.starts_with("file:") || v.starts_with("link:"));
            if !local && !baked.has_node_package(name) {
                return Err(missing(
                    "npm package",
                    name,
                    &format!("{section} of {path}"),
                    "baked/node/package.json",
                ));
            }
        }
    }
    let script_of = |name: &str| {
        manifest
            .get("scripts")
            .and_then(|s| s.get(name))
            .and_then(|s| s.as_str())
            .map(str::to_owned)
    };
    // What `npm start` / `npm test` would run, without npm: no install step and no
    // lifecycle scripts ever run, and node_modules/.bin comes first on PATH as with npm.
    let script_run = "cd \"$CHORUS_PROJECT_DIR\" && PATH=\"$PWD/node_modules/.bin:$PATH\" exec sh -c \"$CHORUS_COMMAND\"' \"$@\"' chorus-run \"$@\"";
    let (key, fallback) = match request.mode {
        RunMode::Test => ("test", None),
        RunMode::Run | RunMode::Release => ("start", Some(relative_to(dir, main))),
    };
    let note = release_note(request.mode);
    if let Some(script) = script_of(key) {
        return Ok(base(
            Kind::Node,
            format!(
                "{} (scripts.{key} of package.json{}){note}",
                quote_for_display(&script),
                where_(dir)
            ),
            script_run,
            vec![("CHORUS_COMMAND".into(), script)],
        ));
    }
    let (summary, script, env) = match fallback {
        // The entry node would load: `main` itself when it is JavaScript, else the
        // package's `main` field.
        Some(entry) => {
            let is_js = ["js", "mjs", "cjs"]
                .iter()
                .any(|ext| entry.ends_with(&format!(".{ext}")));
            let entry = if is_js {
                entry
            } else {
                manifest
                    .get("main")
                    .and_then(|m| m.as_str())
                    .unwrap_or("index.js")
                    .to_owned()
            };
            (
                format!(
                    "node {entry} (package.json{} has no start script){note}",
                    where_(dir)
                ),
                "cd \"$CHORUS_PROJECT_DIR\" && exec node \"$CHORUS_ENTRY\" \"$@\"",
                vec![("CHORUS_ENTRY".into(), entry)],
            )
        }
        None => (
            format!(
                "node --test (package.json{} has no test script)",
                where_(dir)
            ),
            "cd \"$CHORUS_PROJECT_DIR\" && exec node --test \"$@\"",
            Vec::new(),
        ),
    };
    Ok(base(Kind::Node, summary, script, env))
}

fn python(
    dir: &str,
    main: &str,
    marker: &str,
    mode: RunMode,
    base: impl Fn(Kind, String, &str, Vec<(String, String)>) -> Planned,
) -> Planned {
    let entry = relative_to(dir, main);
    match mode {
        RunMode::Test => base(
            Kind::Python,
            format!("python3 -m pytest -q ({marker}{})", where_(dir)),
            "cd \"$CHORUS_PROJECT_DIR\" && exec python3 -m pytest -q \"$@\"",
            Vec::new(),
        ),
        RunMode::Run | RunMode::Release => base(
            Kind::Python,
            format!(
                "python3 -u {entry} ({marker}{}){}",
                where_(dir),
                release_note(mode)
            ),
            "cd \"$CHORUS_PROJECT_DIR\" && exec python3 -u \"$CHORUS_ENTRY\" \"$@\"",
            vec![("CHORUS_ENTRY".into(), entry)],
        ),
    }
}

fn single_file(request: &RunRequest, languages: &[Language]) -> Result<Planned, SandboxError> {
    let language = resolve(languages, request.language.as_deref(), &request.main).ok_or_else(
        || match &request.language {
            Some(name) => SandboxError::UnknownLanguage(name.clone()),
            None => SandboxError::NoLanguageFor(request.main.clone()),
        },
    )?;
    let argv = language.argv(&request.main, &request.args);
    let why = if request.language.is_some() {
        "language given".to_owned()
    } else {
        format!("{} is {}", request.main, language.name)
    };
    // A compile-and-run script (`sh -c "rustc ... && exec ..."`) shows as its compiler.
    let shown = match language.command.as_slice() {
        [sh, c, script, ..] if sh == "sh" && c == "-c" => {
            let tool = script.split_whitespace().next().unwrap_or("sh");
            format!("{tool} {}, then run it", request.main)
        }
        command => command.join(" ").replace("{main}", &request.main),
    };
    let note = if request.mode == RunMode::Test {
        "; test mode needs a project file, so a normal run"
    } else {
        release_note(request.mode)
    };
    Ok(Planned {
        summary: format!("{shown} ({why}){note}"),
        image: language.image.clone(),
        argv,
        env: Vec::new(),
        kind: Kind::File,
        project_dir: String::new(),
        builds: false,
        compile_timeout: None,
    })
}

fn release_note(mode: RunMode) -> &'static str {
    if mode == RunMode::Release {
        "; release mode applies to Cargo projects, so a normal run"
    } else {
        ""
    }
}

fn sh_script(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into(), "chorus".into()]
}

/// A command line as the header shows it: as is when it has no quote to confuse.
fn quote_for_display(command: &str) -> String {
    let command = command.trim();
    if command.contains('`') {
        format!("\"{command}\"")
    } else {
        format!("`{command}`")
    }
}

fn missing(what: &str, name: &str, wanted_by: &str, manifest: &str) -> SandboxError {
    SandboxError::MissingDependency(format!(
        "{what} `{name}` ({wanted_by}) is not in the sandbox image, and runs have no network; \
         to add it, list it in sandbox/images/{manifest} and rebuild the image (see {HOW_TO_ADD})"
    ))
}

/// Every crate the project's manifests ask for must be vendored at a matching version,
/// else `cargo --offline` would fail after a container start with a less direct message.
fn check_cargo(
    dir: &str,
    request: &RunRequest,
    files: &BTreeSet<&str>,
    baked: &Baked,
) -> Result<(), SandboxError> {
    // The project's own manifest, its members below it and a workspace root above it.
    let in_scope = |path: &str| {
        let manifest_dir = path
            .strip_suffix("Cargo.toml")
            .map(|d| d.trim_end_matches('/'));
        let Some(manifest_dir) = manifest_dir else {
            return false;
        };
        if !(path == "Cargo.toml" || path.ends_with("/Cargo.toml")) {
            return false;
        }
        dir.is_empty()
            || manifest_dir == dir
            || manifest_dir.starts_with(&format!("{dir}/"))
            || ancestors(&join(dir, "x")).iter().any(|a| a == manifest_dir)
    };
    for path in files.iter().copied().filter(|path| in_scope(path)) {
        let manifest: toml::Table = toml::from_str(text_of(request, path))
            .map_err(|err| SandboxError::Project(format!("{path}: {}", err.message())))?;
        let mut tables: Vec<(String, &toml::Table)> = Vec::new();
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if let Some(table) = manifest.get(section).and_then(|t| t.as_table()) {
                tables.push((section.to_owned(), table));
            }
            if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
                for (cfg, target) in targets {
                    if let Some(table) = target.get(section).and_then(|t| t.as_table()) {
                        tables.push((format!("target.{cfg}.{section}"), table));
                    }
                }
            }
        }
        if let Some(table) = manifest
            .get("workspace")
            .and_then(|w| w.get("dependencies"))
            .and_then(|t| t.as_table())
        {
            tables.push(("workspace.dependencies".to_owned(), table));
        }
        for (section, table) in tables {
            for (key, spec) in table {
                check_crate(path, &section, key, spec, baked)?;
            }
        }
    }
    Ok(())
}

fn check_crate(
    manifest: &str,
    section: &str,
    key: &str,
    spec: &toml::Value,
    baked: &Baked,
) -> Result<(), SandboxError> {
    let (name, requirement) = match spec {
        toml::Value::String(version) => (key, Some(version.as_str())),
        toml::Value::Table(table) => {
            if table.contains_key("path")
                || table.get("workspace").and_then(|w| w.as_bool()) == Some(true)
            {
                return Ok(());
            }
            if table.contains_key("git") {
                return Err(SandboxError::MissingDependency(format!(
                    "crate `{key}` ({section} of {manifest}) comes from git, and runs have no \
                     network; use a crates.io version that the image vendors (see {HOW_TO_ADD})"
                )));
            }
            let name = table.get("package").and_then(|p| p.as_str()).unwrap_or(key);
            (name, table.get("version").and_then(|v| v.as_str()))
        }
        _ => {
            return Err(SandboxError::Project(format!(
                "{manifest}: `{key}` in [{section}] is neither a version nor a table"
            )))
        }
    };
    let versions = baked.crate_versions(name);
    let wanted_by = format!("{section} of {manifest}");
    if versions.is_empty() {
        return Err(missing(
            "crate",
            name,
            &wanted_by,
            "baked/crates/Cargo.toml",
        ));
    }
    let Some(requirement) = requirement else {
        return Ok(());
    };
    let parsed = semver::VersionReq::parse(requirement).map_err(|err| {
        SandboxError::Project(format!("{manifest}: `{name} = \"{requirement}\"`: {err}"))
    })?;
    if versions.iter().any(|version| parsed.matches(version)) {
        return Ok(());
    }
    let have: Vec<String> = versions.iter().map(ToString::to_string).collect();
    Err(SandboxError::MissingDependency(format!(
        "crate `{name} = \"{requirement}\"` ({wanted_by}) is not in the sandbox image, which \
         vendors {name} {}; change the requirement, or add that version to \
         sandbox/images/baked/crates/Cargo.toml and rebuild the image (see {HOW_TO_ADD})",
        have.join(", ")
    )))
}

/// The `Cargo.lock` that governs the project (in its directory or the nearest above,
/// where a workspace root keeps it) and the first registry package it pins at a
/// version the image does not vendor, if any. An unreadable lock counts as stale.
fn stale_cargo_lock(
    dir: &str,
    request: &RunRequest,
    files: &BTreeSet<&str>,
    baked: &Baked,
) -> Option<(String, String)> {
    let mut dirs = vec![dir.to_owned()];
    dirs.extend(ancestors(&join(dir, "x")).into_iter().skip(1));
    let lock = dirs
        .iter()
        .map(|dir| join(dir, "Cargo.lock"))
        .find(|path| files.contains(path.as_str()))?;
    let Ok(parsed) = toml::from_str::<toml::Table>(text_of(request, &lock)) else {
        return Some((lock, "nothing cargo can read".to_owned()));
    };
    let packages = parsed.get("package").and_then(|p| p.as_array())?;
    packages.iter().find_map(|package| {
        let source = package.get("source").and_then(|s| s.as_str())?;
        let name = package.get("name").and_then(|n| n.as_str())?;
        let version = package.get("version").and_then(|v| v.as_str())?;
        let vendored = baked
            .crate_versions(name)
            .iter()
            .any(|have| have.to_string() == version);
        (source.starts_with("registry+") && !vendored)
            .then(|| (lock.clone(), format!("{name} {version}")))
    })
}

/// Python requirements: `requirements.txt` lines and `pyproject.toml`'s
/// `[project] dependencies` (and Poetry's table), by distribution name.
fn check_python(dir: &str, request: &RunRequest, baked: &Baked) -> Result<(), SandboxError> {
    let requirements = join(dir, "requirements.txt");
    for line in text_of(request, &requirements).lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        // Options (`-r other.txt`, `--index-url`) and URLs cannot be checked by name.
        if line.is_empty() || line.starts_with('-') || line.contains("://") {
            continue;
        }
        check_python_name(requirement_name(line), &requirements, baked)?;
    }
    let pyproject = join(dir, "pyproject.toml");
    let text = text_of(request, &pyproject);
    if !text.is_empty() {
        let manifest: toml::Table = toml::from_str(text)
            .map_err(|err| SandboxError::Project(format!("{pyproject}: {}", err.message())))?;
        let listed = manifest
            .get("project")
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.as_array());
        for requirement in listed.into_iter().flatten().filter_map(|d| d.as_str()) {
            check_python_name(requirement_name(requirement), &pyproject, baked)?;
        }
        let poetry = manifest
            .get("tool")
            .and_then(|t| t.get("poetry"))
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.as_table());
        for name in poetry.into_iter().flat_map(|t| t.keys()) {
            if name != "python" {
                check_python_name(name, &pyproject, baked)?;
            }
        }
    }
    Ok(())
}

/// The distribution name at the start of a PEP 508 requirement (`numpy>=1.20; ...`).
fn requirement_name(requirement: &str) -> &str {
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(requirement.len());
    &requirement[..end]
}

fn check_python_name(name: &str, manifest: &str, baked: &Baked) -> Result<(), SandboxError> {
    if name.is_empty() || baked.has_python_package(name) {
        return Ok(());
    }
    Err(missing(
        "Python package",
        &normalise_python_name(name),
        manifest,
        "baked/python.txt",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::languages::default_languages;

    fn request(main: &str, files: &[(&str, &str)]) -> RunRequest {
        RunRequest {
            main: main.to_owned(),
            files: files
                .iter()
                .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
                .collect(),
            ..RunRequest::default()
        }
    }

    fn planned(request: &RunRequest) -> Result<Planned, String> {
        plan(request, &default_languages(), &Baked::default()).map_err(|e| e.to_string())
    }

    fn summary(request: &RunRequest) -> String {
        match planned(request) {
            Ok(planned) => planned.summary,
            Err(err) => format!("error: {err}"),
        }
    }

    fn env<'a>(planned: &'a Planned, name: &str) -> Option<&'a str> {
        planned
            .env
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    const CARGO: &str = "[package]\nname = \"demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nserde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1.0\"\nrand = \"0.8\"\n";

    #[test]
    fn cargo_projects_run_test_and_release() {
        let mut r = request(
            "demo/src/main.rs",
            &[("demo/Cargo.toml", CARGO), ("demo/src/main.rs", "")],
        );
        let run = planned(&r).unwrap();
        assert_eq!(run.summary, "cargo run --offline (Cargo.toml in demo/)");
        assert_eq!(run.kind, Kind::Cargo);
        assert!(run.builds);
        assert_eq!(run.project_dir, "demo");
        assert_eq!(env(&run, "CHORUS_PROJECT_DIR"), Some("/work/demo"));
        r.mode = RunMode::Test;
        assert_eq!(summary(&r), "cargo test --offline (Cargo.toml in demo/)");
        r.mode = RunMode::Release;
        assert_eq!(
            summary(&r),
            "cargo run --offline --release (Cargo.toml in demo/)"
        );
    }

    #[test]
    fn a_cargo_lock_pinning_other_versions_is_set_aside() {
        let registry = "registry+https://github.com/rust-lang/crates.io-index";
        let lock = |version: &str| {
            format!("version = 4\n[[package]]\nname = \"either\"\nversion = \"{version}\"\nsource = \"{registry}\"\n[[package]]\nname = \"x\"\nversion = \"0.1.0\"\n")
        };
        let have = Baked::default().crate_versions("either")[0].to_string();
        let toml = "[package]\nname = \"x\"\n[dependencies]\neither = \"1\"\n";
        let current = lock(&have);
        let files = [
            ("ws/Cargo.lock", current.as_str()),
            ("ws/x/Cargo.toml", toml),
            ("ws/x/src/main.rs", ""),
        ];
        let run = planned(&request("ws/x/src/main.rs", &files)).unwrap();
        assert_eq!(run.summary, "cargo run --offline (Cargo.toml in ws/x/)");
        assert_eq!(env(&run, "CHORUS_STALE_LOCK"), None);

        let stale = lock("1.6.0");
        let files = [
            ("ws/Cargo.lock", stale.as_str()),
            ("ws/x/Cargo.toml", toml),
            ("ws/x/src/main.rs", ""),
        ];
        let run = planned(&request("ws/x/src/main.rs", &files)).unwrap();
        assert_eq!(
            run.summary,
            "cargo run --offline (Cargo.toml in ws/x/; ws/Cargo.lock pins either 1.6.0, which the image does not vendor, so it is set aside for this run)"
        );
        assert_eq!(env(&run, "CHORUS_STALE_LOCK"), Some("/work/ws/Cargo.lock"));
    }

    #[test]
    fn cargo_picks_the_binary_or_example_that_main_is() {
        let files = [
            ("Cargo.toml", "[package]\nname = \"x\"\n"),
            ("src/bin/tool.rs", ""),
            ("examples/demo.rs", ""),
        ];
        assert_eq!(
            summary(&request("src/bin/tool.rs", &files)),
            "cargo run --offline --bin tool (Cargo.toml)"
        );
        assert_eq!(
            summary(&request("examples/demo.rs", &files)),
            "cargo run --offline --example demo (Cargo.toml)"
        );
    }

    #[test]
    fn a_missing_or_mismatched_crate_is_refused_by_name() {
        let files = [
            (
                "Cargo.toml",
                "[package]\nname = \"x\"\n[dependencies]\nserde = \"1\"\nleft-pad-rs = \"0.1\"\n",
            ),
            ("src/main.rs", ""),
        ];
        let err = summary(&request("src/main.rs", &files));
        assert!(err.starts_with("error: crate `left-pad-rs` (dependencies of Cargo.toml) is not in the sandbox image"), "{err}");
        assert!(
            err.contains("sandbox/images/baked/crates/Cargo.toml"),
            "{err}"
        );

        let files = [
            (
                "Cargo.toml",
                "[package]\nname = \"x\"\n[dev-dependencies]\nrand = \"0.5\"\n",
            ),
            ("src/main.rs", ""),
        ];
        let err = summary(&request("src/main.rs", &files));
        assert!(
            err.contains("crate `rand = \"0.5\"` (dev-dependencies of Cargo.toml)"),
            "{err}"
        );
        assert!(err.contains("vendors rand 0.8."), "{err}");

        let files = [
            (
                "Cargo.toml",
                "[package]\nname = \"x\"\n[dependencies]\nfoo = { git = \"https://x\" }\n",
            ),
            ("src/main.rs", ""),
        ];
        assert!(summary(&request("src/main.rs", &files)).contains("comes from git"));
        // Renamed, path and workspace dependencies are understood.
        let files = [("Cargo.toml", "[package]\nname = \"x\"\n[dependencies]\nr8 = { package = \"rand\", version = \"0.8\" }\nlocal = { path = \"local\" }\nserde = { workspace = true }\n[workspace.dependencies]\nserde = \"1\"\n"), ("src/main.rs", "")];
        assert_eq!(
            summary(&request("src/main.rs", &files)),
            "cargo run --offline (Cargo.toml)"
        );
    }

    #[test]
    fn node_projects_use_their_scripts_without_npm() {
        let package = r#"{"scripts": {"start": "node app.js --fast", "test": "node --test"}, "dependencies": {"lodash": "^4"}}"#;
        let mut r = request(
            "web/app.js",
            &[("web/package.json", package), ("web/app.js", "")],
        );
        let run = planned(&r).unwrap();
        assert_eq!(
            run.summary,
            "`node app.js --fast` (scripts.start of package.json in web/)"
        );
        assert_eq!(env(&run, "CHORUS_COMMAND"), Some("node app.js --fast"));
        r.mode = RunMode::Test;
        assert_eq!(
            summary(&r),
            "`node --test` (scripts.test of package.json in web/)"
        );

        let r = request("main.js", &[("package.json", "{}"), ("main.js", "")]);
        assert_eq!(
            summary(&r),
            "node main.js (package.json has no start script)"
        );
        let r = request(
            "main.js",
            &[
                ("package.json", r#"{"dependencies": {"left-pad": "1"}}"#),
                ("main.js", ""),
            ],
        );
        assert!(summary(&r).starts_with("error: npm package `left-pad` (dependencies of package.json) is not in the sandbox image"));
        let r = request("main.js", &[("package.json", "{"), ("main.js", "")]);
        assert!(
            summary(&r).starts_with("error: bad project file: package.json:"),
            "{}",
            summary(&r)
        );
    }

    #[test]
    fn python_projects_and_their_requirements() {
        let files = [
            (
                "requirements.txt",
                "numpy>=1.20\n# a comment\nPyYAML\n-r other.txt\n",
            ),
            ("app/main.py", ""),
        ];
        let mut r = request("app/main.py", &files);
        let run = planned(&r).unwrap();
        assert_eq!(run.summary, "python3 -u app/main.py (requirements.txt)");
        assert_eq!(env(&run, "CHORUS_ENTRY"), Some("app/main.py"));
        r.mode = RunMode::Test;
        assert_eq!(summary(&r), "python3 -m pytest -q (requirements.txt)");
        r.mode = RunMode::Release;
        assert_eq!(summary(&r), "python3 -u app/main.py (requirements.txt); release mode applies to Cargo projects, so a normal run");

        let r = request(
            "main.py",
            &[
                (
                    "pyproject.toml",
                    "[project]\nname = \"x\"\ndependencies = [\"requests>=2\"]\n",
                ),
                ("main.py", ""),
            ],
        );
        assert!(
            summary(&r).starts_with(
                "error: Python package `requests` (pyproject.toml) is not in the sandbox image"
            ),
            "{}",
            summary(&r)
        );
    }

    #[test]
    fn makefiles_run_and_test() {
        let mut r = request(
            "c/main.c",
            &[("c/Makefile", "run:\n\techo hi\n"), ("c/main.c", "")],
        );
        assert_eq!(summary(&r), "make run (Makefile in c/)");
        r.mode = RunMode::Test;
        assert_eq!(summary(&r), "make test (Makefile in c/)");
    }

    #[test]
    fn run_toml_wins_and_is_documented_by_its_errors() {
        let toml =
            "build = \"gcc -o /tmp/app main.c\"\nrun = \"/tmp/app\"\ncompile_timeout_secs = 30\n";
        let files = [
            (".chorus/run.toml", toml),
            ("Cargo.toml", "[package]\nname = \"x\"\n"),
            ("main.c", ""),
        ];
        let mut r = request("main.c", &files);
        let run = planned(&r).unwrap();
        assert_eq!(
            run.summary,
            "`gcc -o /tmp/app main.c` then `/tmp/app` (run in .chorus/run.toml)"
        );
        assert!(run.builds);
        assert_eq!(run.compile_timeout, Some(Duration::from_secs(30)));
        r.mode = RunMode::Test;
        assert_eq!(
            summary(&r),
            "error: bad project file: .chorus/run.toml has no `test` command"
        );
        r.mode = RunMode::Release;
        assert!(
            summary(&r).ends_with("(run in .chorus/run.toml; no `release` there, so a normal run)")
        );
        let r = request(
            "main.c",
            &[(".chorus/run.toml", "runn = \"x\"\n"), ("main.c", "")],
        );
        assert!(
            summary(&r).contains("unknown field `runn`"),
            "{}",
            summary(&r)
        );
    }

    #[test]
    fn nearest_fitting_project_wins_and_other_languages_pass_over() {
        // A Python script in a Rust repository runs as Python.
        let files = [
            ("Cargo.toml", CARGO),
            ("scripts/gen.py", ""),
            ("src/main.rs", ""),
        ];
        assert_eq!(
            summary(&request("scripts/gen.py", &files)),
            "python3 -u scripts/gen.py (scripts/gen.py is python)"
        );
        // The nearer project wins.
        let files = [
            ("Makefile", ""),
            ("tool/Cargo.toml", "[package]\nname = \"t\"\n"),
            ("tool/src/main.rs", ""),
        ];
        assert_eq!(
            summary(&request("tool/src/main.rs", &files)),
            "cargo run --offline (Cargo.toml in tool/)"
        );
        // A Makefile fits any language; running the project file itself works too.
        let files = [("Makefile", ""), ("x.py", "")];
        assert_eq!(summary(&request("x.py", &files)), "make run (Makefile)");
        let files = [("Cargo.toml", "[package]\nname = \"t\"\n")];
        assert_eq!(
            summary(&request("Cargo.toml", &files)),
            "cargo run --offline (Cargo.toml)"
        );
    }

    #[test]
    fn command_and_language_override_detection() {
        let files = [("Cargo.toml", CARGO), ("src/main.rs", "")];
        let mut r = request("src/main.rs", &files);
        r.command = Some("echo hi".into());
        let run = planned(&r).unwrap();
        assert_eq!(run.summary, "sh -c `echo hi` (command given)");
        assert_eq!(run.kind, Kind::Command);
        r.command = None;
        r.language = Some("rust".into());
        assert_eq!(
            summary(&r),
            "rustc src/main.rs, then run it (language given)"
        );
        r.language = None;
        r.command = Some("  ".into());
        assert_eq!(summary(&r), "error: the run's command is empty");
        let r = request("main.py", &[("main.py", "")]);
        assert_eq!(summary(&r), "python3 -u main.py (main.py is python)");
        let r = request("notes.txt", &[("notes.txt", "")]);
        assert!(summary(&r).starts_with("error: no language for `notes.txt`"));
        let r = request("gone.py", &[("main.py", "")]);
        assert!(summary(&r).starts_with("error: main file `gone.py`"));
    }

    #[test]
    fn projects_run_in_their_toolchains_image() {
        let mut languages = default_languages();
        for language in &mut languages {
            language.image = format!("image-{}", language.name);
        }
        let image = |main: &str, files: &[(&str, &str)]| {
            plan(&request(main, files), &languages, &Baked::default()).map(|p| p.image)
        };
        let cargo = [
            ("Cargo.toml", "[package]\nname = \"x\"\n"),
            ("README.md", ""),
        ];
        assert_eq!(image("README.md", &cargo).unwrap(), "image-rust");
        assert_eq!(
            image("a.py", &[("requirements.txt", ""), ("a.py", "")]).unwrap(),
            "image-python"
        );
        assert_eq!(
            image("a.js", &[("package.json", "{}"), ("a.js", "")]).unwrap(),
            "image-javascript"
        );
        assert_eq!(
            image("a.c", &[("Makefile", ""), ("a.c", "")]).unwrap(),
            "image-c"
        );
        assert_eq!(
            image("notes", &[("Makefile", ""), ("notes", "")]).unwrap(),
            "image-rust"
        );
    }

    #[test]
    fn session_text_never_reaches_the_script() {
        let files = [
            (
                "package.json",
                r#"{"scripts": {"start": "node \"$(id)\" ; rm -rf /"}}"#,
            ),
            ("main.js", ""),
        ];
        let run = planned(&request("main.js", &files)).unwrap();
        assert!(
            !run.argv[2].contains("rm -rf"),
            "the script is fixed: {:?}",
            run.argv
        );
    }
}
