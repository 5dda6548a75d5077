// safetensors: every malformed file the reader must refuse, each with its
// status, a message substring (file, tensor, position) and no leaked block;
// truncations of a valid file at every length; open errors; loads from a
// header-only handle; out of memory.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nsc.h"
#include "tests/st_util.h"

// Opens header + data_bytes zero bytes from memory, expecting failure.
static void expect_bad(const char *header, size_t data_bytes, const char *want) {
    unsigned char zeros[64] = { 0 };
    cr_assert(data_bytes <= sizeof zeros);
    size_t len;
    unsigned char *bytes = nsct_st_file_bytes(header, zeros, data_bytes, &len);
    int64_t before = nsct_st_live_blocks();
    nsc_clear_error();
    nsc_safetensors *st = nsc_safetensors_open_memory(bytes, len, "bad.safetensors");
    free(bytes);
    cr_expect_null(st, "opening <%s> should fail", header);
    nsc_safetensors_free(st);
    cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT, "<%s>: %s", header,
                 nsc_status_name(nsc_last_status()));
    cr_expect(strstr(nsc_last_error(), want), "<%s>:\n  message \"%s\"\n  lacks \"%s\"", header,
              nsc_last_error(), want);
    cr_expect(strstr(nsc_last_error(), "bad.safetensors"), "message names the file: %s",
              nsc_last_error());
    cr_expect_eq(nsct_st_live_blocks(), before, "<%s>: leaked", header);
}

// A one-tensor header: {"t": {<fields>}}.
static const char *entry(const char *fields) {
    static char text[512];
    snprintf(text, sizeof text, "{\"t\":{%s}}", fields);
    return text;
}

#define OK_F32 "\"dtype\":\"F32\",\"shape\":[2]"

Test(safetensors_errors, header_structure) {
    // Syntax errors give the file offset, as every other header error does.
    expect_bad("{\"t\":", 0, "header: unexpected end of input (header line 1, column 6, byte 13)");
    expect_bad("{\"t\" 1}", 0, "expected ':' after key \"t\" (header line 1, column 6, byte 13)");
    expect_bad("{}  x", 0, "unexpected text after the value (header line 1, column 5, byte 12)");
    // Names are UTF-8 (Python's safetensors: "invalid UTF-8 in header").
    expect_bad("{\"a\xff\":{}}", 0,
               "header: invalid UTF-8 in a string: a byte UTF-8 never uses (lead byte 0xff) "
               "(header line 1, column 4, byte 11)");
    expect_bad("{\"a\xed\xa0\x80\":{}}", 0, "a UTF-16 surrogate (lead byte 0xed)");
    expect_bad("[]", 0, "header: expected a JSON object (header line 1, column 1, byte 8)");
    expect_bad("\"x\"", 0, "header: expected a JSON object");
    expect_bad("", 0, "unexpected end of input");
    expect_bad("{} x", 0, "unexpected text after the value");
    expect_bad("{\"t\":[[[[[[[[[1]]]]]]]]]}", 0, "nesting deeper than 8");
    expect_bad("{\"t\":1}", 0,
               "tensor \"t\": expected an object with dtype, shape and data_offsets");
    expect_bad("{\"t\":{}}", 0, "tensor \"t\": missing field dtype");
    expect_bad(entry("\"dtype\":\"F32\",\"data_offsets\":[0,8]"), 8, "missing field shape");
    expect_bad(entry(OK_F32), 8, "tensor \"t\": missing field data_offsets");
    expect_bad(entry(OK_F32 ",\"dtype\":\"F32\",\"data_offsets\":[0,8]"), 8,
               "tensor \"t\": field dtype appears twice");
}

Test(safetensors_errors, dtype) {
    expect_bad(entry("\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]"), 8,
               "tensor \"t\": dtype: expected a string such as \"F32\" (header line 1, column 15, "
               "byte 22)");
    expect_bad(entry("\"dtype\":\"Q8\",\"shape\":[2],\"data_offsets\":[0,2]"), 2,
               "tensor \"t\": dtype \"Q8\": not a safetensors dtype");
    expect_bad(entry("\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]"), 8,
               "dtype \"f32\": not a safetensors dtype");
}

Test(safetensors_errors, shape) {
    expect_bad(entry("\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]"), 8,
               "tensor \"t\": shape: expected an array of sizes");
    expect_bad(entry("\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]"), 8,
               "tensor \"t\": shape[0]: expected a non-negative integer");
    expect_bad(entry("\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]"), 8,
               "shape[0]: expected a non-negative integer");
    expect_bad(entry("\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]"), 8,
               "shape[1]: expected a non-negative integer");
    expect_bad(entry("\"dtype\":\"F32\",\"shape\":[1e3],\"data_offsets\":[0,8]"), 8,
               "shape[0]: expected a non-negative integer");
    expect_bad(entry("\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]"),
               8, "shape[0]: expected a non-negative integer");
    expect_bad(entry("\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                     "\"data_offsets\":[0,8]"),
               8, "tensor \"t\": shape: element count overflows int64");
    expect_bad(entry("\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]"), 8,
               "expected 4611686018427387904 elements x 32 bits");
    char rank65[400] = "\"dtype\":\"F32\",\"shape\":[1";
    for (int i = 1; i < 65; i++) {
        strcat(rank65, ",1");
    }
    strcat(rank65, "],\"data_offsets\":[0,4]");
    expect_bad(entry(rank65), 4, "tensor \"t\": shape of rank 65: expected at most 64 dims");
}

Test(safetensors_errors, data_offsets) {
    expect_bad(entry(OK_F32 ",\"data_offsets\":8"), 8,
               "tensor \"t\": data_offsets: expected [begin, end], two non-negative integers");
    expect_bad(entry(OK_F32 ",\"data_offsets\":[8]"), 8, "data_offsets: expected [begin, end]");
    expect_bad(entry(OK_F32 ",\"data_offsets\":[0,8,8]"), 8, "data_offsets: expected");
    expect_bad(entry(OK_F32 ",\"data_offsets\":[-8,0]"), 8, "data_offsets: expected");
    expect_bad(entry(OK_F32 ",\"data_offsets\":[0,8.0]"), 8, "data_offsets: expected");
    expect_bad(entry(OK_F32 ",\"data_offsets\":[8,0]"), 8,
               "tensor \"t\": data_offsets [8, 0]: begin is after end");
    expect_bad(entry(OK_F32 ",\"data_offsets\":[0,8]"), 7,
               "tensor \"t\": data_offsets [0, 8]: end is beyond the data section of 7 bytes");
    expect_bad(entry(OK_F32 ",\"data_offsets\":[0,18446744073709551615]"), 8,
               "data_offsets: expected");
    expect_bad(entry(OK_F32 ",\"data_offsets\":[0,4]"), 8,
               "tensor \"t\": shape [2] of F32: data_offsets [0, 4] hold 4 bytes, expected 2 "
               "elements x 32 bits");
    expect_bad(entry(OK_F32 ",\"data_offsets\":[0,12]"), 12, "hold 12 bytes");
    expect_bad(entry("\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]"), 2,
               "expected 3 elements x 4 bits");
}

Test(safetensors_errors, overlapping_ranges) {
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\" at [0, 8]");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
               "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
               16, "overlap tensor \"a\" at [0, 16]");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, "overlap tensor");
}

Test(safetensors_errors, duplicates) {
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "tensor \"a\" appears twice (header line 1, column 59, byte 66)");
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears twice");
    expect_bad("{\"__metadata__\":{\"k\":\"1\",\"j\":\"2\",\"k\":\"3\"}}", 0,
               "__metadata__ key \"k\" appears twice");
}

Test(safetensors_errors, metadata) {
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0,
               "__metadata__ \"k\": expected a string value (header line 1, column 22, byte 29)");
    expect_bad("{\"__metadata__\":{\"k\":null}}", 0, "expected a string value");
    expect_bad("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "expected a string value");
    expect_bad("{\"__metadata__\":[\"k\"]}", 0, "__metadata__: expected an object of strings");
    expect_bad("{\"__metadata__\":\"k\"}", 0, "__metadata__: expected an object of strings");
    // Handed out as C strings: a NUL would cut the value short without a word.
    expect_bad("{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0,
               "__metadata__ \"k\": the value holds \\u0000: expected a string without NUL "
               "(header line 1, column 22, byte 29)");
}

Test(safetensors_errors, positions_on_later_lines) {
    expect_bad(
        "{\n  \"a\": {\"dtype\": \"F32\", \"shape\": [2],\n        \"data_offsets\": [0, 9]}\n}", 9,
        "(header line 3, column 25, byte 72)");
}

Test(safetensors_errors, file_length) {
    int64_t before = nsct_st_live_blocks();
    const unsigned char small[7] = { 0 };
    for (size_t n = 0; n < 8; n++) {
        cr_expect_null(nsc_safetensors_open_memory(n ? small : NULL, n, "tiny.safetensors"));
        cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT);
        cr_expect(strstr(nsc_last_error(), "expected at least the 8-byte header length"), "%s",
                  nsc_last_error());
    }
    // Header length larger than the file, then larger than the limit.
    unsigned char bytes[16] = { 9, 0, 0, 0, 0, 0, 0, 0, '{', '}' };
    cr_expect_null(nsc_safetensors_open_memory(bytes, 10, "len.safetensors"));
    cr_expect(strstr(nsc_last_error(), "len.safetensors: header length 9: expected at most the 2 "
                                       "bytes after it (byte 0)"),
              "%s", nsc_last_error());
    bytes[0] = 0x01, bytes[3] = 0x10; // 268435457 bytes
    cr_expect_null(nsc_safetensors_open_memory(bytes, 10, "len.safetensors"));
    cr_expect(strstr(nsc_last_error(), "header length 268435457: expected at most the 2 bytes"));
    memset(bytes, 0xff, 8);
    cr_expect_null(nsc_safetensors_open_memory(bytes, 16, "len.safetensors"));
    cr_expect(strstr(nsc_last_error(),
                     "header length 18446744073709551615: expected at most the 8 bytes"),
              "%s", nsc_last_error());
    cr_expect_null(nsc_safetensors_open_memory(NULL, 10, "null"));
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
    cr_expect_eq(nsct_st_live_blocks(), before);
}

Test(safetensors_errors, header_over_the_limit_on_disk) {
    // A sparse file of 100 MB + 9 bytes claiming a 100 MB + 1 byte header.
    const char *path = nsct_st_tmp_path("huge_header");
    FILE *f = fopen(path, "wb");
    uint64_t n = 100000001;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) {
        len8[i] = (unsigned char)(n >> (8 * i));
    }
    fwrite(len8, 1, 8, f);
    fclose(f);
    cr_assert_eq(truncate(path, (off_t)(8 + n)), 0);
    cr_expect_null(nsc_safetensors_open(path));
    cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT);
    cr_expect(strstr(nsc_last_error(), "header length 100000001: expected at most 100000000 (the "
                                       "header size limit) (byte 0)"),
              "%s", nsc_last_error());
    unlink(path);
}

// Every prefix of a valid file fails cleanly, from memory and (a few) from disk.
Test(safetensors_errors, truncated_files) {
    nsc_tensor *a = nsc_arange(0, 10, 1, NSC_F32), *b = nsc_arange(0, 3, 1, NSC_I64);
    const char *names[] = { "a", "b" };
    nsc_tensor *ts[] = { a, b };
    const char *path = nsct_st_tmp_path("whole");
    const char *key = "k", *value = "v";
    cr_assert_eq(nsc_safetensors_save(path, 2, names, ts, 1, &key, &value), NSC_OK);
    size_t len;
    unsigned char *whole = nsct_st_read(path, &len);
    int64_t before = nsct_st_live_blocks();
    for (size_t n = 0; n < len; n++) {
        nsc_safetensors *st = nsc_safetensors_open_memory(whole, n, "cut.safetensors");
        cr_expect_null(st, "a %zu-byte prefix of %zu opened", n, len);
        cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT, "n=%zu: %s", n, nsc_last_error());
        cr_expect_eq(nsct_st_live_blocks(), before, "n=%zu leaked", n);
    }
    const char *cut = nsct_st_tmp_path("cut");
    for (size_t n = 0; n < len; n += len / 7) {
        FILE *f = fopen(cut, "wb");
        fwrite(whole, 1, n, f);
        fclose(f);
        cr_expect_null(nsc_safetensors_open(cut), "prefix of %zu bytes", n);
        cr_expect(strstr(nsc_last_error(), cut), "%s", nsc_last_error());
    }
    nsc_safetensors *st = nsc_safetensors_open_memory(whole, len, "whole");
    cr_expect_not_null(st, "%s", nsc_last_error());
    nsc_safetensors_free(st);
    free(whole);
    nsc_free(a);
    nsc_free(b);
    unlink(path);
    unlink(cut);
}

Test(safetensors_errors, open_errors) {
    int64_t before = nsct_st_live_blocks();
    cr_expect_null(nsc_safetensors_open("/nonexistent/model.safetensors"));
    cr_expect_eq(nsc_last_status(), NSC_ERR_IO);
    cr_expect(
        strstr(nsc_last_error(), "/nonexistent/model.safetensors: cannot open: No such file"));
    cr_expect_null(nsc_safetensors_open("/tmp"));
    cr_expect_eq(nsc_last_status(), NSC_ERR_IO);
    cr_expect(strstr(nsc_last_error(), "/tmp: not a regular file"), "%s", nsc_last_error());
    cr_expect_null(nsc_safetensors_open(NULL));
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
    const char *empty = nsct_st_tmp_path("empty");
    fclose(fopen(empty, "wb"));
    cr_expect_null(nsc_safetensors_open(empty));
    cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT);
    cr_expect(strstr(nsc_last_error(), "file of 0 bytes"));
    unlink(empty);
    cr_expect_eq(nsct_st_live_blocks(), before);
}

// A header-only handle answers names and infos, and every load says why it
// fails (the data was never read), not that the tensor's dtype is wrong.
Test(safetensors_errors, header_only_handles_refuse_loads) {
    nsc_tensor *a = nsc_arange(0, 10, 1, NSC_F32);
    const char *name = "x", *path = nsct_st_tmp_path("header_only");
    cr_assert_eq(nsc_safetensors_save(path, 1, &name, &a, 0, NULL, NULL), NSC_OK);
    int64_t before = nsct_st_live_blocks();
    nsc_safetensors *st = nsc_safetensors_open_header(path);
    cr_assert(st, "%s", nsc_last_error());
    nsc_safetensors_info info;
    cr_expect_eq(nsc_safetensors_get_info(st, "x", &info), NSC_OK);
    cr_expect_str_eq(info.dtype, "F32");
    cr_expect_null(nsc_safetensors_load(st, "x"));
    cr_expect_eq(nsc_last_status(), NSC_ERR_STATE, "%s", nsc_status_name(nsc_last_status()));
    char want[512];
    snprintf(want, sizeof want,
             "%s (header only): tensor \"x\": the data is not loaded (opened with "
             "nsc_safetensors_open_header)",
             path);
    cr_expect(strstr(nsc_last_error(), want), "%s", nsc_last_error());
    cr_expect_null(strstr(nsc_last_error(), "dtype"), "%s", nsc_last_error());
    cr_expect_null(nsc_safetensors_load(st, "y"));
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG, "a missing name stays an argument error");
    nsc_safetensors_free(st);
    cr_expect_eq(nsct_st_live_blocks(), before);
    nsc_free(a);
    unlink(path);
}

// Lenient where the reference is strict but nothing can go wrong: gaps
// between tensors, trailing bytes, unknown fields, a null __metadata__.
Test(safetensors_errors, accepted_oddities) {
    unsigned char data[32] = { 0 };
    size_t len;
    unsigned char *bytes = nsct_st_file_bytes(
        "{\"__metadata__\":null,\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12],"
        "\"extra\":[1,2]},\"a\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[9,9]},"
        "\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}   ",
        data, 32, &len);
    nsc_safetensors *st = nsc_safetensors_open_memory(bytes, len, "odd");
    free(bytes);
    cr_assert_not_null(st, "%s", nsc_last_error());
    cr_expect_eq(nsc_safetensors_count(st), 3);
    cr_expect_str_eq(nsc_safetensors_name(st, 0), "b", "file order is kept");
    cr_expect_str_eq(nsc_safetensors_name(st, 2), "");
    nsc_tensor *t = nsc_safetensors_load(st, "");
    cr_expect_not_null(t, "an empty name is a name");
    nsc_free(t);
    nsc_safetensors_free(st);
}

// Every allocation of an open fails in turn: NULL with NSC_ERR_OOM, no leak.
Test(safetensors_errors, open_out_of_memory_sweep) {
    const char *path = nsct_st_fixture("st_python.safetensors");
    int64_t before = nsct_st_live_blocks();
    bool succeeded = false;
    for (int k = 1; k < 100 && !succeeded; k++) {
        nsc_mem_fail_after(k);
        nsc_safetensors *st = nsc_safetensors_open(path);
        nsc_tensor *t = st ? nsc_safetensors_load(st, "f16") : NULL;
        nsc_mem_fail_after(0);
        succeeded = t != NULL;
        if (!succeeded) {
            cr_expect_eq(nsc_last_status(), NSC_ERR_OOM, "k=%d: %s", k, nsc_last_error());
        }
        nsc_free(t);
        nsc_safetensors_free(st);
        cr_expect_eq(nsct_st_live_blocks(), before, "k=%d leaked", k);
    }
    cr_expect(succeeded);
}
