// Op-level timing, as torch.profiler's per-op table (key_averages()): every
// op kernel run between nsc_profile_start and nsc_profile_stop is counted and
// timed, per op and device. CPU kernels are timed by the host's clock; CUDA
// kernels by two events recorded on the stream around each one, read at
// stop (which waits for the GPU): stream time, the GPU's own while its queue
// runs ahead of the host, but for small ops on an idle GPU it includes the
// host's launch, and with several threads running CUDA ops their intervals
// overlap (rows add up to more than the GPU's time). An op whose kernel runs
// other ops (a copy into a contiguous layout) is charged for them; views
// run no kernel and are not listed. Backward rules and optimizer updates are
// ops too. A kernel still running when the profile stops is not counted.
// Profiling costs one atomic load per op when off; on, a lock and (CUDA) two
// events per op, kept until stop.
#ifndef NSC_PROFILE_H
#define NSC_PROFILE_H

#include <stdint.h>
#include <stdio.h>

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nsc_profile_row {
    const char *op; // the op's name, as in graph texts: "matmul", "attention", ...
    nsc_device device;
    int64_t calls;
    double total_ms;
} nsc_profile_row;

// Clears the table and starts counting (NSC_ERR_STATE when already started).
nsc_status nsc_profile_start(void);

// Stops counting and reads the device times, waiting for the device
// (NSC_ERR_STATE when not started). A device error is returned, and the
// ops from the first failed read on are left untimed (still counted).
nsc_status nsc_profile_stop(void);

// The table of the running or last profile, largest total first (CUDA rows
// get their times at stop): writes up to max rows, returns how many there are.
int nsc_profile_rows(nsc_profile_row *rows, int max);

// Prints that table: op, device, calls, total ms, mean us per call and the
// share of the total, then the total. NSC_ERR_ARG (nothing printed) when out
// is NULL.
nsc_status nsc_profile_print(FILE *out);

#ifdef __cplusplus
}
#endif

#endif
