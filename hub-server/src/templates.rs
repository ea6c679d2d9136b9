//! Starter projects that `chorus session create --template NAME` seeds a
//! new session with: two files that import one another, so that the first
//! run already shows a multi-file project working, and what each
//! language's tools expect beside them (Cargo.toml, package.json).
//!
//! Invariant: every template's `main` runs as is with the sandbox's default
//! languages and prints `Hello, Chorus!` (tests/templates.rs runs each in a
//! real container).

/// One template: its files (workspace-relative path, text) and the file
/// to run.
pub struct Template {
    pub name: &'static str,
    pub main: &'static str,
    pub files: &'static [(&'static str, &'static str)],
}

macro_rules! file {
    ($template:literal, $path:literal) => {
        (
            $path,
            include_str!(concat!("../templates/", $template, "/", $path)),
        )
    };
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "python",
        main: "main.py",
        files: &[file!("python", "main.py"), file!("python", "greeting.py")],
    },
    Template {
        name: "rust",
        main: "src/main.rs",
        files: &[
            file!("rust", "Cargo.toml"),
            file!("rust", "src/main.rs"),
            file!("rust", "src/greeting.rs"),
        ],
    },
    Template {
        name: "node",
        main: "main.js",
        files: &[
            file!("node", "package.json"),
            file!("node", "main.js"),
            file!("node", "greeting.js"),
        ],
    },
    Template {
        name: "c",
        main: "main.c",
        files: &[file!("c", "main.c"), file!("c", "greeting.h")],
    },
];

/// The template called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name.eq_ignore_ascii_case(name))
}

/// The names, for help and error messages.
pub fn names() -> Vec<&'static str> {
    TEMPLATES.iter().map(|t| t.name).collect()
}
