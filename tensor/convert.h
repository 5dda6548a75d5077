// Converting a double to an element type: the cast every kernel uses and the
// range check that refuses a scalar argument an integer dtype cannot hold.
// Separate so tensor_impl.h stays under its size limit.
#ifndef NSC_TENSOR_CONVERT_H
#define NSC_TENSOR_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc/tensor.h"

// float -> int64 as x86 (and so PyTorch on x86) does it, without C's
// undefined behaviour: truncation; NaN and out-of-range give INT64_MIN.
static inline int64_t nsci_float_to_i64(double v) {
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) {
        return INT64_MIN;
    }
    return (int64_t)v;
}

// Whether a scalar argument (a fill value, a bound, an operand) converts to
// dtype without overflow, as torch checks one ("value cannot be converted to
// type int64_t without overflow"): i64 holds [-2^63, 2^63), so NaN and the
// infinities do not fit; floats and bool take any value (bool: nonzero).
static inline bool nsci_scalar_fits(nsc_dtype dtype, double v) {
    return dtype != NSC_I64 || (v >= -9223372036854775808.0 && v < 9223372036854775808.0);
}

// What a refusal says after the value: "fill_: value nan " NSCI_I64_RANGE.
#define NSCI_I64_RANGE "does not fit int64: expected a number in [-2^63, 2^63)"

#endif
