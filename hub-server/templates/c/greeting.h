/* What main.c prints: edit it together and run again. The run compiles
 * main.c alone, so the code lives in this header. */
#ifndef GREETING_H
#define GREETING_H

#include <stdio.h>

static inline void greet(char *out, size_t size, const char *name) {
    snprintf(out, size, "Hello, %s!", name);
}

#endif
