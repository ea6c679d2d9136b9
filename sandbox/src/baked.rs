//! What the sandbox image holds besides its toolchains: the crates, npm packages and
//! Python packages baked in when it was built, so that a run can be refused before it
//! starts when a project asks for something else (the sandbox has no network).
//!
//! Invariant: the default catalogue is compiled from the very files the image build
//! reads (`sandbox/images/baked/`): `crates/Cargo.lock` (what `cargo vendor` vendors),
//! `node/package-lock.json` (what `npm ci` installs) and `python.txt` (which Debian
//! packages apt installs). The image carries a label with their hash, so a catalogue
//! and an image cannot silently disagree after a rebuild from the same tree.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const CRATES_LOCK: &str = include_str!("../images/baked/crates/Cargo.lock");
const NODE_LOCK: &str = include_str!("../images/baked/node/package-lock.json");
const PYTHON_LIST: &str = include_str!("../images/baked/python.txt");

/// The root package of `baked/crates`, which only exists to pin the set.
const CRATES_ROOT: &str = "chorus-baked-crates";

/// Where a user learns how to add a package; part of every "missing" message.
pub(crate) const HOW_TO_ADD: &str = "sandbox/images/README.md, \"Baked dependencies\"";

/// The packages an image provides. Cheap to clone (shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baked {
    inner: Arc<Catalogue>,
}

#[derive(Debug, PartialEq, Eq)]
struct Catalogue {
    /// Crate name → the vendored versions (several majors of some crates).
    crates: BTreeMap<String, Vec<semver::Version>>,
    /// npm package name → version, top level of `node_modules` only (what `require` sees).
    node: BTreeMap<String, String>,
    /// PEP 503-normalised distribution names.
    python: BTreeSet<String>,
}

impl Default for Baked {
    /// The catalogue of the default image, `DEFAULT_IMAGE`.
    fn default() -> Self {
        Baked::parse(CRATES_LOCK, NODE_LOCK, PYTHON_LIST)
            .expect("the baked manifests in sandbox/images/baked parse (unit-tested)")
    }
}

impl Baked {
    /// Builds a catalogue from a `Cargo.lock`, an npm `package-lock.json` (v2 or v3) and a
    /// `python.txt` (Debian package, then the PyPI names it provides, per line).
    pub fn parse(cargo_lock: &str, package_lock: &str, python: &str) -> Result<Baked, String> {
        let mut crates: BTreeMap<String, Vec<semver::Version>> = BTreeMap::new();
        let lock: toml::Table =
            toml::from_str(cargo_lock).map_err(|err| format!("Cargo.lock: {err}"))?;
        let packages = lock
            .get("package")
            .and_then(|packages| packages.as_array())
            .ok_or("Cargo.lock: no [[package]]")?;
        for package in packages {
            let (Some(name), Some(version)) = (
                package.get("name").and_then(|v| v.as_str()),
                package.get("version").and_then(|v| v.as_str()),
            ) else {
                return Err("Cargo.lock: a package without name or version".into());
            };
            if name == CRATES_ROOT {
                continue;
            }
            let version = semver::Version::parse(version)
                .map_err(|err| format!("Cargo.lock: {name} {version}: {err}"))?;
            crates.entry(name.to_owned()).or_default().push(version);
        }

        let lock: serde_json::Value = serde_json::from_str(package_lock)
            .map_err(|err| format!("package-lock.json: {err}"))?;
        let mut node = BTreeMap::new();
        if let Some(packages) = lock.get("packages").and_then(|p| p.as_object()) {
            for (path, package) in packages {
                // Nested copies (`node_modules/a/node_modules/b`) are private to `a`.
                let Some(name) = path.strip_prefix("node_modules/") else {
                    continue;
                };
                if name.contains("/node_modules/") {
                    continue;
                }
                let version = package.get("version").and_then(|v| v.as_str());
                node.insert(name.to_owned(), version.unwrap_or("").to_owned());
            }
        }

        let python = python_list_lines(python)
            .flat_map(|fields| fields.into_iter().skip(1))
            .map(normalise_python_name)
            .collect();
        Ok(Baked {
            inner: Arc::new(Catalogue {
                crates,
                node,
                python,
            }),
        })
    }

    /// The vendored versions of `name`, oldest first; empty when it is not baked in.
    pub fn crate_versions(&self, name: &str) -> &[semver::Version] {
        self.inner
            .crates
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether `name` is a top-level module of the baked `node_modules`.
    pub fn has_node_package(&self, name: &str) -> bool {
        self.inner.node.contains_key(name)
    }

    /// Whether a Python distribution called `name` (any spelling) is installed.
    pub fn has_python_package(&self, name: &str) -> bool {
        self.inner.python.contains(&normalise_python_name(name))
    }

    /// How many crates are vendored (distinct names).
    pub fn crate_count(&self) -> usize {
        self.inner.crates.len()
    }
}

/// The non-comment lines of `python.txt`, split into words.
fn python_list_lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| !fields.is_empty())
}

/// PEP 503: case-insensitive, runs of `-`, `_` and `.` are one `-`.
pub(crate) fn normalise_python_name(name: &str) -> String {
    let mut normalised = String::with_capacity(name.len());
    for character in name.trim().chars() {
        if matches!(character, '-' | '_' | '.') {
            if !normalised.ends_with('-') {
                normalised.push('-');
            }
        } else {
            normalised.push(character.to_ascii_lowercase());
        }
    }
    normalised
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_catalogue_has_the_curated_sets() {
        let baked = Baked::default();
        for name in [
            "serde",
            "serde_json",
            "rand",
            "regex",
            "itertools",
            "tokio",
            "anyhow",
        ] {
            assert!(!baked.crate_versions(name).is_empty(), "{name} is vendored");
        }
        // Several majors of rand, because tutorials pin old ones.
        let majors: Vec<String> = baked
            .crate_versions("rand")
            .iter()
            .map(|v| format!("{}.{}", v.major, v.minor))
            .collect();
        assert_eq!(majors, ["0.8", "0.9", "0.10"]);
        assert!(baked.crate_versions(CRATES_ROOT).is_empty());
        assert!(baked.crate_count() > 100, "dependencies are vendored too");
        for name in ["lodash", "chalk", "uuid", "dayjs", "ramda", "immutable"] {
            assert!(baked.has_node_package(name), "{name} is installed");
        }
        assert!(!baked.has_node_package("left-pad"));
        for name in [
            "numpy",
            "NumPy",
            "pytest",
            "python_dateutil",
            "PyYAML",
            "attrs",
        ] {
            assert!(baked.has_python_package(name), "{name} is installed");
        }
        assert!(!baked.has_python_package("requests"));
    }

    #[test]
    fn python_names_are_normalised_as_pep_503_says() {
        assert_eq!(normalise_python_name("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(normalise_python_name(" pyyaml "), "pyyaml");
    }
}
