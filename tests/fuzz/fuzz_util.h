/*
 * Shared by the fuzz targets. Known open findings: each has a reproducer in
 * tests/fuzz/regressions/<target>/ (replayed by the NAME_regress tests, which fail until
 * the bug is fixed) and, so that a campaign can look past it for new bugs, a filter in
 * its target that MS_FUZZ_SKIP_KNOWN=1 turns on. Remove a filter when its bug is fixed.
 */
#ifndef MS_FUZZ_UTIL_H
#define MS_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline bool ms_fuzz_skip_known(void) {
    const char *v = getenv("MS_FUZZ_SKIP_KNOWN");
    return v != NULL && strcmp(v, "0") != 0;
}

#endif
