// The profiler's hooks around each kernel (tensor/dispatch.c calls them;
// the public calls are in nsc/profile.h). Only the outermost kernel of a
// thread is timed: a kernel that runs other ops is charged for them.
#ifndef NSC_TENSOR_PROFILE_H
#define NSC_TENSOR_PROFILE_H

#include <stdbool.h>

#include "tensor/tensor_impl.h"

typedef struct nsci_profile_mark {
    unsigned run;   // the profile begin saw (a kernel ending after a stop records nothing)
    bool timed;     // profiling was on and this is the thread's outermost kernel
    bool nested;    // a kernel inside another (depth to unwind, nothing recorded)
    double host_ms; // CPU: the host clock at the start
    void *device;   // CUDA: the stream's mark at the start (NULL: untimed)
} nsci_profile_mark;

// Before op's kernel on dev; after it (whatever its status).
void nsci_profile_begin(nsci_profile_mark *m, nsc_device dev);
void nsci_profile_end(const nsci_profile_mark *m, nsc_op op, nsc_device dev);

#endif
