"""A starter for a Chorus session: run it with chorus.run on this file
(Chorus: Run in VS Code, :ChorusRun in Neovim, the code action in Helix)."""

from greeting import greet

if __name__ == "__main__":
    print(greet("Chorus"))
