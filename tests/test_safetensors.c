// safetensors: round trips of every dtype and layout, zero-copy tensors that
// outlive their file handle, F16/BF16/integer conversions against known bit
// patterns, files written by Python's safetensors (and byte-identical
// rewrites of them), and the writer's errors. Malformed files are in
// test_safetensors_errors.c.
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nsc.h"
#include "tests/st_util.h"

// --- round trips ---

Test(safetensors, round_trip_every_dtype) {
    int64_t before = nsct_st_live_blocks();
    nsc_tensor *f32 = nsc_arange(-3, 3, 1, NSC_F32);
    nsc_tensor *f32v = nsc_reshape(f32, NSC_SHAPE(2, 3));
    nsc_tensor *f64 = nsc_from_data(NSC_F64, NSC_SHAPE(3), (double[]){ 1.0 / 3, -0.0, 1e300 });
    nsc_tensor *i64 =
        nsc_from_data(NSC_I64, NSC_SHAPE(3), (int64_t[]){ INT64_MIN, INT64_MAX, (1LL << 53) + 1 });
    nsc_tensor *b = nsc_from_data(NSC_BOOL, NSC_SHAPE(4), (uint8_t[]){ 1, 0, 0, 1 });
    nsc_tensor *scalar = nsc_scalar(NSC_F32, 2.5);
    nsc_tensor *empty = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(0, 2));
    const char *names[] = { "w", "z", "ids", "mask", "s", "e" };
    nsc_tensor *ts[] = { f32v, f64, i64, b, scalar, empty };
    const char *keys[] = { "format", "note" }, *values[] = { "pt", "\"quoted\"\n\xc3\xa9" };
    const char *path = nsct_st_tmp_path("round_trip");
    cr_assert_eq(nsc_safetensors_save(path, 6, names, ts, 2, keys, values), NSC_OK, "%s",
                 nsc_last_error());

    nsc_safetensors *st = nsc_safetensors_open(path);
    cr_assert_not_null(st, "%s", nsc_last_error());
    cr_expect_eq(nsc_safetensors_count(st), 6);
    // The reference order: I64, F64, F32, BOOL, then by name.
    const char *order[] = { "ids", "e", "z", "s", "w", "mask" };
    for (int i = 0; i < 6; i++) {
        cr_expect_str_eq(nsc_safetensors_name(st, i), order[i]);
    }
    for (int i = 0; i < 6; i++) {
        nsc_tensor *t = nsc_safetensors_load(st, names[i]);
        cr_assert_not_null(t, "%s: %s", names[i], nsc_last_error());
        cr_expect(nsct_st_equal(t, ts[i]), "%s differs after the round trip", names[i]);
        nsc_free(t);
    }
    cr_expect(nsc_safetensors_has(st, "mask"));
    cr_expect(!nsc_safetensors_has(st, "nope"));
    cr_expect_str_eq(nsc_safetensors_get_metadata(st, "format"), "pt");
    cr_expect_str_eq(nsc_safetensors_get_metadata(st, "note"), values[1]);
    cr_expect_null(nsc_safetensors_get_metadata(st, "absent"));
    cr_expect_eq(nsc_safetensors_metadata_count(st), 2);
    cr_expect_str_eq(nsc_safetensors_metadata_key(st, 0), "format");
    cr_expect_null(nsc_safetensors_metadata_key(st, 2));
    nsc_safetensors_free(st);
    for (int i = 0; i < 6; i++) {
        nsc_free(ts[i]);
    }
    nsc_free(f32);
    unlink(path);
    cr_expect_eq(nsct_st_live_blocks(), before);
}

Test(safetensors, header_layout_matches_the_reference_writer) {
    nsc_tensor *a = nsc_ones(NSC_BOOL, NSC_CPU, NSC_SHAPE(3));
    nsc_tensor *c = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1));
    const char *names[] = { "b", "a" };
    nsc_tensor *ts[] = { a, c };
    const char *path = nsct_st_tmp_path("layout");
    cr_assert_eq(nsc_safetensors_save(path, 2, names, ts, 0, NULL, NULL), NSC_OK);
    size_t len;
    unsigned char *bytes = nsct_st_read(path, &len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) {
        n = n << 8 | bytes[i];
    }
    cr_expect_eq(n % 8, 0, "header padded to a multiple of 8");
    cr_expect_eq(len, 8 + n + 4 + 3);
    const char *want = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[4,7]}}";
    cr_expect_eq(memcmp(bytes + 8, want, strlen(want)), 0, "header: %.*s", (int)n, bytes + 8);
    for (size_t i = 8 + strlen(want); i < 8 + n; i++) {
        cr_expect_eq(bytes[i], ' ', "padding is spaces");
    }
    free(bytes);
    nsc_free(a);
    nsc_free(c);
    unlink(path);
}

// Bytes Python's safetensors 0.8 writes for the same input (serde_json escapes).
Test(safetensors, metadata_escapes_match_the_reference_writer) {
    nsc_tensor *a = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(0));
    const char *name = "a", *key = "k", *value = "\b\f\x1f\x7f";
    const char *path = nsct_st_tmp_path("escapes");
    cr_assert_eq(nsc_safetensors_save(path, 1, &name, &a, 1, &key, &value), NSC_OK);
    const char want[] = "{\"__metadata__\":{\"k\":\"\\b\\f\\u001f\x7f\"},\"a\":{\"dtype\":\"F32\","
                        "\"shape\":[0],\"data_offsets\":[0,0]}}       ";
    size_t len;
    unsigned char *bytes = nsct_st_read(path, &len);
    cr_expect_eq(len, 8 + sizeof want - 1);
    cr_expect_eq(bytes[0], sizeof want - 1);
    cr_expect_eq(memcmp(bytes + 8, want, sizeof want - 1), 0, "%.*s", (int)len - 8, bytes + 8);
    free(bytes);
    nsc_free(a);
    unlink(path);
}

Test(safetensors, non_contiguous_tensors_write_row_major) {
    int64_t before = nsct_st_live_blocks();
    nsc_tensor *base = nsc_arange(0, 24, 1, NSC_F64);
    nsc_tensor *m = nsc_reshape(base, NSC_SHAPE(4, 6));
    nsc_tensor *tr = nsc_transpose(m, 0, 1);        // [6, 4], strides (1, 6)
    nsc_tensor *stepped = nsc_slice(m, 1, 1, 6, 2); // [4, 3], step 2
    nsc_tensor *row = nsc_arange(0, 3, 1, NSC_I64);
    nsc_tensor *expanded = nsc_expand(row, NSC_SHAPE(2, 3)); // stride 0
    nsc_tensor *picked = nsc_select(m, 1, 5);                // [4], stride 6, offset 5
    cr_assert(tr && stepped && expanded && picked, "%s", nsc_last_error());
    const char *names[] = { "tr", "stepped", "expanded", "picked" };
    nsc_tensor *ts[] = { tr, stepped, expanded, picked };
    const char *path = nsct_st_tmp_path("strided");
    cr_assert_eq(nsc_safetensors_save(path, 4, names, ts, 0, NULL, NULL), NSC_OK, "%s",
                 nsc_last_error());
    nsc_safetensors *st = nsc_safetensors_open(path);
    cr_assert_not_null(st, "%s", nsc_last_error());
    for (int i = 0; i < 4; i++) {
        nsc_tensor *t = nsc_safetensors_load(st, names[i]);
        cr_expect(nsct_st_equal(t, ts[i]), "%s", names[i]);
        cr_expect(nsc_tensor_is_contiguous(t));
        nsc_free(t);
    }
    nsc_safetensors_free(st);
    nsc_tensor *all[] = { base, m, tr, stepped, row, expanded, picked };
    for (int i = 0; i < 7; i++) {
        nsc_free(all[i]);
    }
    unlink(path);
    cr_expect_eq(nsct_st_live_blocks(), before);
}

Test(safetensors, empty_file_list_and_no_metadata) {
    const char *path = nsct_st_tmp_path("nothing");
    cr_assert_eq(nsc_safetensors_save(path, 0, NULL, NULL, 0, NULL, NULL), NSC_OK, "%s",
                 nsc_last_error());
    size_t len;
    unsigned char *bytes = nsct_st_read(path, &len);
    cr_expect_eq(len, 16);
    cr_expect_eq(memcmp(bytes + 8, "{}      ", 8), 0);
    free(bytes);
    nsc_safetensors *st = nsc_safetensors_open(path);
    cr_assert_not_null(st, "%s", nsc_last_error());
    cr_expect_eq(nsc_safetensors_count(st), 0);
    cr_expect_eq(nsc_safetensors_metadata_count(st), 0);
    nsc_safetensors_free(st);
    unlink(path);
}

// --- zero copy ---

Test(safetensors, zero_copy_tensors_outlive_the_handle) {
    int64_t before = nsct_st_live_blocks();
    nsc_tensor *w = nsc_arange(0, 1024, 1, NSC_F32);
    const char *names[] = { "w" };
    const char *path = nsct_st_tmp_path("zero_copy");
    cr_assert_eq(nsc_safetensors_save(path, 1, names, &w, 0, NULL, NULL), NSC_OK);
    nsc_safetensors *st = nsc_safetensors_open(path);
    cr_assert_not_null(st);
    int64_t data_before = nsc_mem_stats_get().data_bytes;
    nsc_tensor *a = nsc_safetensors_load(st, "w");
    nsc_tensor *b = nsc_safetensors_load(st, "w");
    cr_assert(a && b, "%s", nsc_last_error());
    cr_expect_eq(nsc_mem_stats_get().data_bytes, data_before, "aligned f32 is not copied");
    cr_expect_eq(nsc_tensor_data(a), nsc_tensor_data(b), "both view the mapping");
    nsc_safetensors_free(st);
    cr_expect(nsct_st_equal(a, w), "values readable after the handle is freed");
    // The mapping is private: an in-place write changes the tensor, never the file.
    cr_expect_eq(nsc_fill_(a, 7.0), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(((float *)nsc_tensor_data(a))[3], 7.0f);
    nsc_free(a);
    cr_expect_eq(((float *)nsc_tensor_data(b))[1], 7.0f, "loads of one tensor share memory");
    nsc_free(b);
    st = nsc_safetensors_open(path);
    nsc_tensor *again = nsc_safetensors_load(st, "w");
    cr_expect(nsct_st_equal(again, w), "the file is unchanged");
    nsc_free(again);
    nsc_safetensors_free(st);
    nsc_free(w);
    unlink(path);
    cr_expect_eq(nsct_st_live_blocks(), before);
}

Test(safetensors, unaligned_data_is_copied) {
    // The header is 6 bytes, so the data section starts at file byte 14.
    float values[2] = { 1.5f, -2.0f };
    size_t len;
    unsigned char *bytes = nsct_st_file_bytes(
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", values, 8, &len);
    nsc_safetensors *st = nsc_safetensors_open_memory(bytes, len, "unaligned");
    free(bytes); // open_memory copies
    cr_assert_not_null(st, "%s", nsc_last_error());
    nsc_tensor *t = nsc_safetensors_load(st, "x");
    cr_assert_not_null(t, "%s", nsc_last_error());
    cr_expect_eq(((float *)nsc_tensor_data(t))[0], 1.5f);
    cr_expect_eq(((float *)nsc_tensor_data(t))[1], -2.0f);
    nsc_safetensors_free(st);
    nsc_free(t);
}

// --- conversions ---

// Loads one tensor of the given dtype and raw bytes from an in-memory file.
static nsc_tensor *load_raw(const char *dtype, int64_t n, const void *data, size_t data_bytes) {
    char header[200];
    snprintf(header, sizeof header,
             "{\"t\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[0,%zu]}}", dtype,
             (long long)n, data_bytes);
    size_t len;
    unsigned char *bytes = nsct_st_file_bytes(header, data, data_bytes, &len);
    nsc_safetensors *st = nsc_safetensors_open_memory(bytes, len, dtype);
    free(bytes);
    cr_assert_not_null(st, "%s", nsc_last_error());
    nsc_tensor *t = nsc_safetensors_load(st, "t");
    nsc_safetensors_free(st);
    return t;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

Test(safetensors, f16_converts_exactly) {
    const uint16_t in[] = { 0x0000, 0x8000, 0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF,
                            0x0400, 0x7C00, 0xFC00, 0x7E00, 0x3555, 0x8001, 0x7C01 };
    // float32 bit patterns: exact values, subnormals normalised, NaN payload kept.
    const uint32_t want[] = { 0x00000000, 0x80000000, 0x3F800000, 0xC0000000, 0x477FE000,
                              0x33800000, 0x387FC000, 0x38800000, 0x7F800000, 0xFF800000,
                              0x7FC00000, 0x3EAAA000, 0xB3800000, 0x7F802000 };
    nsc_tensor *t = load_raw("F16", 14, in, sizeof in);
    cr_assert_not_null(t, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_dtype(t), NSC_F32);
    const float *got = nsc_tensor_data(t);
    for (int i = 0; i < 14; i++) {
        cr_expect_eq(f32_bits(got[i]), want[i], "f16 0x%04x: got 0x%08x, want 0x%08x", in[i],
                     f32_bits(got[i]), want[i]);
    }
    cr_expect_eq(got[5], ldexpf(1, -24), "smallest subnormal is 2^-24");
    cr_expect_eq(got[4], 65504.0f);
    nsc_free(t);
}

Test(safetensors, f16_every_pattern_matches_the_value) {
    // Every one of the 65536 halves against its value computed in double.
    uint16_t *in = malloc(65536 * 2);
    for (int i = 0; i < 65536; i++) {
        in[i] = (uint16_t)i;
    }
    nsc_tensor *t = load_raw("F16", 65536, in, 65536 * 2);
    cr_assert_not_null(t);
    const float *got = nsc_tensor_data(t);
    int bad = 0;
    for (int i = 0; i < 65536 && bad < 5; i++) {
        int e = (i >> 10) & 0x1f, m = i & 0x3ff;
        double v = e == 0    ? ldexp(m, -24)
                   : e == 31 ? (m ? (double)NAN : (double)INFINITY)
                             : ldexp(m + 1024, e - 25);
        v = (i & 0x8000) ? -v : v;
        bool ok = isnan(v) ? isnan(got[i]) : (double)got[i] == v && !signbit(got[i]) == !signbit(v);
        bad += !ok;
        cr_expect(ok, "f16 0x%04x: got %g, want %g", i, (double)got[i], v);
    }
    free(in);
    nsc_free(t);
}

Test(safetensors, bf16_converts_exactly) {
    const uint16_t in[] = { 0x3F80, 0xC0A0, 0x0001, 0x0080, 0x7F80, 0x7FC0, 0x4049, 0x8000 };
    nsc_tensor *t = load_raw("BF16", 8, in, sizeof in);
    cr_assert_not_null(t);
    const float *got = nsc_tensor_data(t);
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(f32_bits(got[i]), (uint32_t)in[i] << 16, "bf16 0x%04x", in[i]);
    }
    cr_expect_eq(got[1], -5.0f);
    nsc_free(t);
}

Test(safetensors, integers_widen_to_i64) {
    struct {
        const char *dtype;
        int64_t n;
        const void *data;
        size_t bytes;
        int64_t want[4];
    } cases[] = {
        { "I32",
          4,
          (int32_t[]){ INT32_MIN, INT32_MAX, 0, -7 },
          16,
          { INT32_MIN, INT32_MAX, 0, -7 } },
        { "U32", 2, (uint32_t[]){ UINT32_MAX, 5 }, 8, { UINT32_MAX, 5 } },
        { "I16", 2, (int16_t[]){ INT16_MIN, INT16_MAX }, 4, { INT16_MIN, INT16_MAX } },
        { "U16", 2, (uint16_t[]){ UINT16_MAX, 1 }, 4, { UINT16_MAX, 1 } },
        { "I8", 3, (int8_t[]){ -128, 127, -1 }, 3, { -128, 127, -1 } },
        { "U8", 3, (uint8_t[]){ 0, 255, 7 }, 3, { 0, 255, 7 } },
    };
    for (int c = 0; c < 6; c++) {
        nsc_tensor *t = load_raw(cases[c].dtype, cases[c].n, cases[c].data, cases[c].bytes);
        cr_assert_not_null(t, "%s: %s", cases[c].dtype, nsc_last_error());
        cr_expect_eq(nsc_tensor_dtype(t), NSC_I64);
        for (int64_t i = 0; i < cases[c].n; i++) {
            cr_expect_eq(((int64_t *)nsc_tensor_data(t))[i], cases[c].want[i], "%s[%lld]",
                         cases[c].dtype, (long long)i);
        }
        nsc_free(t);
    }
}

Test(safetensors, bool_bytes_other_than_0_1_are_normalised) {
    const uint8_t in[] = { 0, 1, 2, 255 };
    nsc_tensor *t = load_raw("BOOL", 4, in, 4);
    cr_assert_not_null(t);
    const uint8_t *got = nsc_tensor_data(t);
    cr_expect(got[0] == 0 && got[1] == 1 && got[2] == 1 && got[3] == 1);
    nsc_free(t);
}

Test(safetensors, unsupported_dtypes_and_ranks_fail_on_load) {
    int64_t before = nsct_st_live_blocks();
    uint8_t zeros[17] = { 0 };
    size_t len;
    unsigned char *bytes = nsct_st_file_bytes(
        "{\"u\":{\"dtype\":\"U64\",\"shape\":[2],\"data_offsets\":[0,16]},"
        "\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,0]},"
        "\"r9\":{\"dtype\":\"BOOL\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
        zeros, 16, &len);
    nsc_safetensors *st = nsc_safetensors_open_memory(bytes, len, "odd.safetensors");
    free(bytes);
    cr_expect_null(st, "F8_E4M3 [2] in 0 bytes is a length error");
    cr_expect(strstr(nsc_last_error(), "tensor \"f8\""), "%s", nsc_last_error());
    bytes = nsct_st_file_bytes("{\"u\":{\"dtype\":\"U64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                               "\"r9\":{\"dtype\":\"BOOL\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                               "\"data_offsets\":[16,17]}}",
                               zeros, 17, &len);
    st = nsc_safetensors_open_memory(bytes, len, "odd.safetensors");
    free(bytes);
    cr_assert_not_null(st, "%s", nsc_last_error());
    cr_expect_null(nsc_safetensors_load(st, "u"));
    cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT);
    cr_expect(strstr(nsc_last_error(), "odd.safetensors: tensor \"u\": dtype U64"), "%s",
              nsc_last_error());
    cr_expect_null(nsc_safetensors_load(st, "r9"));
    cr_expect(strstr(nsc_last_error(), "tensor \"r9\": rank 9: expected at most 8 dims"), "%s",
              nsc_last_error());
    nsc_safetensors_info info;
    cr_expect_eq(nsc_safetensors_get_info(st, "r9", &info), NSC_OK, "info works for any rank");
    cr_expect_eq(info.ndim, 9);
    cr_expect_str_eq(info.dtype, "BOOL");
    nsc_safetensors_free(st);
    cr_expect_eq(nsct_st_live_blocks(), before);
}

// --- files written by Python ---

Test(safetensors, reads_the_python_fixture) {
    int64_t before = nsct_st_live_blocks();
    nsc_safetensors *st = nsc_safetensors_open(nsct_st_fixture("st_python.safetensors"));
    cr_assert_not_null(st, "%s", nsc_last_error());
    cr_expect_eq(nsc_safetensors_count(st), 14);
    cr_expect(strstr(nsc_safetensors_get_metadata(st, "made_by"), "safetensors"));
    nsc_tensor *t = nsc_safetensors_load(st, "layer.0.weight");
    cr_assert_not_null(t, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_ndim(t), 2);
    for (int i = 0; i < 12; i++) {
        cr_expect_eq(((float *)nsc_tensor_data(t))[i], (float)i / 8);
    }
    nsc_free(t);
    t = nsc_safetensors_load(st, "f32");
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(((float *)nsc_tensor_data(t))[i], (float)i * 0.5f - 1);
    }
    nsc_free(t);
    t = nsc_safetensors_load(st, "i64");
    const int64_t want_i64[] = { (1LL << 62) + 1, -5, INT64_MIN, INT64_MAX };
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(((int64_t *)nsc_tensor_data(t))[i], want_i64[i]);
    }
    nsc_free(t);
    t = nsc_safetensors_load(st, "f16");
    cr_expect_eq(((float *)nsc_tensor_data(t))[5], ldexpf(1, -24));
    cr_expect(isnan(((float *)nsc_tensor_data(t))[10]));
    nsc_free(t);
    t = nsc_safetensors_load(st, "bf16");
    cr_expect_eq(f32_bits(((float *)nsc_tensor_data(t))[6]), 0x40490000u);
    nsc_free(t);
    t = nsc_safetensors_load(st, "scalar");
    cr_expect_eq(nsc_tensor_ndim(t), 0);
    cr_expect_eq(nsc_tensor_item(t), 2.25);
    nsc_free(t);
    t = nsc_safetensors_load(st, "empty");
    cr_expect_eq(nsc_tensor_numel(t), 0);
    cr_expect_eq(nsc_tensor_size(t, 1), 3);
    nsc_free(t);
    t = nsc_safetensors_load(st, "u8");
    cr_expect_eq(((int64_t *)nsc_tensor_data(t))[1], 255);
    nsc_free(t);
    cr_expect_null(nsc_safetensors_load(st, "u64"));
    nsc_safetensors_free(st);
    cr_expect_eq(nsct_st_live_blocks(), before);
}

// Loading every tensor of the plain fixture and saving them again, with its
// metadata, reproduces Python's file byte for byte.
Test(safetensors, rewrite_of_the_python_file_is_byte_identical) {
    int64_t before = nsct_st_live_blocks();
    const char *fixture = nsct_st_fixture("st_python_plain.safetensors");
    nsc_safetensors *st = nsc_safetensors_open(fixture);
    cr_assert_not_null(st, "%s", nsc_last_error());
    int n = (int)nsc_safetensors_count(st);
    cr_assert_eq(n, 5);
    const char *names[5];
    nsc_tensor *ts[5];
    for (int i = 0; i < n; i++) {
        names[i] = nsc_safetensors_name(st, n - 1 - i); // any order in, reference order out
        ts[i] = nsc_safetensors_load(st, names[i]);
        cr_assert_not_null(ts[i], "%s", nsc_last_error());
    }
    const char *key = "made_by", *value = nsc_safetensors_get_metadata(st, key);
    const char *path = nsct_st_tmp_path("rewrite");
    cr_assert_eq(nsc_safetensors_save(path, n, names, ts, 1, &key, &value), NSC_OK, "%s",
                 nsc_last_error());
    size_t want_len, got_len;
    unsigned char *want = nsct_st_read(fixture, &want_len), *got = nsct_st_read(path, &got_len);
    cr_expect_eq(got_len, want_len);
    cr_expect(got_len == want_len && memcmp(got, want, got_len) == 0,
              "differs from Python's bytes: %.*s", (int)(got_len < 300 ? got_len : 300), got + 8);
    free(want);
    free(got);
    for (int i = 0; i < n; i++) {
        nsc_free(ts[i]);
    }
    nsc_safetensors_free(st);
    unlink(path);
    cr_expect_eq(nsct_st_live_blocks(), before);
}

// --- queries ---

Test(safetensors, query_errors) {
    nsc_safetensors *st = nsc_safetensors_open(nsct_st_fixture("st_python_plain.safetensors"));
    cr_assert_not_null(st);
    cr_expect_null(nsc_safetensors_name(st, 5));
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "safetensors_name: index 5: expected 0..4"));
    cr_expect_null(nsc_safetensors_name(st, -1));
    cr_expect_null(nsc_safetensors_load(st, "missing"));
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "no tensor \"missing\" among its 5 tensors"), "%s",
              nsc_last_error());
    nsc_safetensors_info info;
    cr_expect_eq(nsc_safetensors_get_info(st, "missing", &info), NSC_ERR_ARG);
    cr_expect_eq(nsc_safetensors_get_info(st, "weight", &info), NSC_OK);
    cr_expect_eq(info.numel, 12);
    cr_expect_eq(info.data_bytes, 48);
    cr_expect_eq(info.shape[1], 4);
    cr_expect_eq(info.file_offset % 4, 0, "F32 data is 4-byte aligned");
    cr_expect_null(nsc_safetensors_load(NULL, "weight"));
    cr_expect_null(nsc_safetensors_load(st, NULL));
    cr_expect_eq(nsc_safetensors_count(NULL), 0);
    cr_expect(!nsc_safetensors_has(NULL, "weight"));
    nsc_safetensors_free(st);
    nsc_safetensors_free(NULL);
}

// --- writer errors ---

// True when dir holds a file whose name starts with prefix and holds ".tmp".
static bool temp_left(const char *path) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *base = slash + 1;
    *slash = '\0';
    DIR *d = opendir(dir);
    bool found = false;
    for (struct dirent *e; d && (e = readdir(d));) {
        found = found || (strncmp(e->d_name, base, strlen(base)) == 0 && strstr(e->d_name, ".tmp"));
    }
    closedir(d);
    return found;
}

static void expect_save_error(const char *path, int n, const char *const *names,
                              nsc_tensor *const *ts, nsc_status status, const char *want) {
    int64_t before = nsct_st_live_blocks();
    cr_expect_eq(nsc_safetensors_save(path, n, names, ts, 0, NULL, NULL), status, "%s: %s", want,
                 nsc_last_error());
    cr_expect(strstr(nsc_last_error(), want), "message \"%s\" lacks \"%s\"", nsc_last_error(),
              want);
    cr_expect_eq(nsct_st_live_blocks(), before);
}

Test(safetensors, save_errors) {
    nsc_tensor *a = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2));
    nsc_tensor *meta = nsc_empty(NSC_F32, NSC_META, NSC_SHAPE(2));
    const char *path = nsct_st_tmp_path("save_errors");
    nsc_tensor *two[] = { a, a }, *with_meta[] = { meta }, *with_null[] = { NULL };
    expect_save_error(NULL, 1, (const char *[]){ "a" }, two, NSC_ERR_ARG, "path is NULL");
    expect_save_error(path, -1, NULL, NULL, NSC_ERR_ARG, "-1 tensors");
    expect_save_error(path, 2, (const char *[]){ "a", "a" }, two, NSC_ERR_ARG,
                      "name \"a\" appears twice");
    expect_save_error(path, 1, (const char *[]){ "__metadata__" }, two, NSC_ERR_ARG,
                      "reserved for the metadata");
    expect_save_error(path, 1, (const char *[]){ "bad\xff" }, two, NSC_ERR_ARG,
                      "name 0: is not valid UTF-8");
    expect_save_error(path, 1, (const char *[]){ "\xc0\x80" }, two, NSC_ERR_ARG, "UTF-8");
    expect_save_error(path, 1, (const char *[]){ "\xed\xa0\x80" }, two, NSC_ERR_ARG, "UTF-8");
    expect_save_error(path, 1, (const char *[]){ NULL }, two, NSC_ERR_ARG, "name 0: is NULL");
    expect_save_error(path, 1, (const char *[]){ "m" }, with_meta, NSC_ERR_DEVICE,
                      "tensor 0 (\"m\"): is on meta and has no data");
    expect_save_error(path, 1, (const char *[]){ "n" }, with_null, NSC_ERR_ARG, "is NULL");
    expect_save_error("/nonexistent-dir/x.safetensors", 1, (const char *[]){ "a" }, two, NSC_ERR_IO,
                      "cannot create");
    const char *k[] = { "k", "k" }, *v[] = { "1", "2" };
    cr_expect_eq(nsc_safetensors_save(path, 1, (const char *[]){ "a" }, two, 2, k, v), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "metadata key \"k\" appears twice"));
    cr_expect_eq(
        nsc_safetensors_save(path, 1, (const char *[]){ "a" }, two, 1, k, (const char *[]){ NULL }),
        NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "metadata value 0: is NULL"));
    cr_expect(access(path, F_OK) != 0, "no file after failures");
    cr_expect(!temp_left(path));
    nsc_free(a);
    nsc_free(meta);
}

// Every allocation of a save fails in turn: the old file stays intact and no
// temporary file or block is left behind.
Test(safetensors, save_out_of_memory_leaves_the_old_file) {
    nsc_tensor *base = nsc_arange(0, 12, 1, NSC_F32);
    nsc_tensor *m = nsc_reshape(base, NSC_SHAPE(3, 4));
    nsc_tensor *tr = nsc_transpose(m, 0, 1);
    const char *names[] = { "tr", "m" };
    nsc_tensor *ts[] = { tr, m };
    const char *path = nsct_st_tmp_path("oom_save");
    cr_assert_eq(nsc_safetensors_save(path, 1, names + 1, ts + 1, 0, NULL, NULL), NSC_OK);
    size_t old_len;
    unsigned char *old = nsct_st_read(path, &old_len);
    int64_t before = nsct_st_live_blocks();
    bool succeeded = false;
    for (int k = 1; k < 100 && !succeeded; k++) {
        nsc_mem_fail_after(k);
        nsc_status s = nsc_safetensors_save(path, 2, names, ts, 0, NULL, NULL);
        nsc_mem_fail_after(0);
        succeeded = s == NSC_OK;
        if (!succeeded) {
            cr_expect_eq(s, NSC_ERR_OOM, "k=%d: %s", k, nsc_last_error());
            size_t len;
            unsigned char *now = nsct_st_read(path, &len);
            cr_expect(len == old_len && memcmp(now, old, len) == 0, "k=%d: file changed", k);
            free(now);
        }
        cr_expect(!temp_left(path), "k=%d: temporary file left", k);
        cr_expect_eq(nsct_st_live_blocks(), before, "k=%d: leaked", k);
    }
    cr_expect(succeeded);
    free(old);
    nsc_free(tr);
    nsc_free(m);
    nsc_free(base);
    unlink(path);
}
