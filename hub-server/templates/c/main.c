/* A starter for a Chorus session: run it with chorus.run on this file
 * (Chorus: Run in VS Code, :ChorusRun in Neovim, the code action in Helix). */
#include <stdio.h>

#include "greeting.h"

int main(void) {
    char line[64];
    greet(line, sizeof line, "Chorus");
    puts(line);
    return 0;
}
