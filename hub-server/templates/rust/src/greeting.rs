/// What main.rs prints: edit it together and run again.
pub fn greet(name: &str) -> String {
    format!("Hello, {name}!")
}
