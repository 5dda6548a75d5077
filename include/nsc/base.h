// Status codes, the per-thread error record, memory counters and threads:
// what every other nsc header builds on.
#ifndef NSC_BASE_H
#define NSC_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NSC_VERSION_MAJOR 0
#define NSC_VERSION_MINOR 1
#define NSC_VERSION_PATCH 0

// --- status and errors ---

// Every function that can fail returns NULL or a status and records a message
// in a thread-local slot. NSC_STOPPED is not an error: a forward ended early
// because the intervention graph asked it to.
typedef enum nsc_status {
    NSC_OK = 0,
    NSC_ERR_ARG,
    NSC_ERR_SHAPE,
    NSC_ERR_DTYPE,
    NSC_ERR_DEVICE,
    NSC_ERR_OOM,
    NSC_ERR_IO,
    NSC_ERR_FORMAT,
    NSC_ERR_STATE,
    NSC_ERR_UNSUPPORTED,
    NSC_STOPPED,
} nsc_status;

// Message of the last failure on this thread ("" when none). Borrowed; valid
// until the next nsc call on this thread.
const char *nsc_last_error(void);

// Status of the last failure on this thread (NSC_OK when none).
nsc_status nsc_last_status(void);

// Forgets the last failure on this thread.
void nsc_clear_error(void);

// Short name of a status ("NSC_ERR_SHAPE"). Static string.
const char *nsc_status_name(nsc_status status);

// --- source positions ---

// Records the caller's source position for the next graph node created on
// this thread. The same-named macros of nsc/source.h call it, so errors in
// an intervention graph name the user's file:line; call it by hand only when
// building graphs through function pointers.
void nsc_source_mark(const char *file, int line);

// --- memory ---

// Counters of the one allocator every nsc allocation goes through. Blocks and
// bytes are live counts; data bytes are the tensor storages among them.
typedef struct nsc_mem_stats {
    int64_t live_blocks;
    int64_t live_bytes;
    int64_t peak_bytes;
    int64_t data_bytes;
    int64_t peak_data_bytes;
    int64_t n_allocs; // allocations since the process started
} nsc_mem_stats;

// Reads the counters (atomically per field).
nsc_mem_stats nsc_mem_stats_get(void);

// Resets the peak counters to the current live values.
void nsc_mem_reset_peak(void);

// Makes the n-th allocation from now fail (1 = the next one) and every one
// after it until disarmed with 0. For out-of-memory tests; process-wide.
void nsc_mem_fail_after(int64_t n);

// Number of allocations that failed because of nsc_mem_fail_after since the
// switch was last armed.
int64_t nsc_mem_failed_count(void);

// Releases blocks the allocator keeps for reuse (tensor storages of freed
// tensors). Live counters never include cached blocks.
void nsc_mem_trim(void);

// --- threads ---

// Number of worker threads nsc kernels use (default: NSC_NUM_THREADS, else
// the number of online CPUs). Also sets OpenBLAS's thread count so the two
// pools do not compete. Call before starting work, from one thread.
void nsc_set_num_threads(int n);

// Current number of worker threads.
int nsc_get_num_threads(void);

#ifdef __cplusplus
}
#endif

#endif
