// A starter for a Chorus session: run it with chorus.run on this file
// (Chorus: Run in VS Code, :ChorusRun in Neovim, the code action in Helix).
mod greeting;

fn main() {
    println!("{}", greeting::greet("Chorus"));
}
