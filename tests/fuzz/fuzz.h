/* fuzz.h — what every fuzz target shares: the libFuzzer entry point and a check that aborts, so
 * a broken invariant is a finding like a crash (libFuzzer saves the input). */
#ifndef TASKER_FUZZ_H
#define TASKER_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FUZZ_CHECK: an invariant of the code under test; its failure aborts with the location. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* fuzz_cstr: data as a NUL-terminated string (malloc'd; the caller frees). Bytes after an embedded
 * NUL are invisible to C string code, as they would be in the daemon. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
