// Helpers shared by the safetensors suites (tests/st_util.c).
#ifndef NSC_TESTS_ST_UTIL_H
#define NSC_TESTS_ST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nsc.h"

// Live allocator blocks now.
int64_t nsct_st_live_blocks(void);
// A per-process path under /tmp for name (static buffer, 4 in rotation).
const char *nsct_st_tmp_path(const char *name);
// Path of tests/fixtures/<file> under $NSC_SOURCE_DIR (default ".").
const char *nsct_st_fixture(const char *file);
// Whole file from malloc (caller free()s); NULL when unreadable.
unsigned char *nsct_st_read(const char *path, size_t *len);
// The bytes of a safetensors file: length, header text, data (caller free()s).
unsigned char *nsct_st_file_bytes(const char *header, const void *data, size_t data_bytes,
                                  size_t *len);
// Same dtype, shape and bit-identical values (any layouts, CPU).
bool nsct_st_equal(nsc_tensor *a, nsc_tensor *b);

#endif
