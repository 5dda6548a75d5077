// Numbers at the edges of their dtype: in the graph text's tensor literals
// f32 near FLT_MAX (what torch.tensor(x, dtype=torch.float32) gives) and i64
// beyond 2^53, written and read back bit for bit; printed and copied out.
#include <criterion/criterion.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/text_impl.h"
#include "tests/harness.h"

// The literal in text as a tensor, or NULL with the reader's error.
static nsc_tensor *read_literal(const char *text) {
    nsci_json_doc *doc = nsci_json_parse(text, strlen(text), NULL, "literal");
    cr_assert(doc, "%s", nsc_last_error());
    nsc_tensor *t = nsci_text_read_literal("literal", nsci_json_root(doc), 100);
    nsci_json_doc_free(doc);
    return t;
}

// torch.tensor([3.4028235e38, -3.4028235e38, 3.4028235677973362e38], dtype=torch.float32)
// gives [FLT_MAX, -FLT_MAX, FLT_MAX] (the last is just below the halfway point
// 0x1.ffffffp127 to 2^128), and inf for 3.4028235677973366e38 (that point).
Test(numbers, f32_takes_what_rounds_to_flt_max_and_refuses_what_rounds_to_inf) {
    int64_t start = nsct_live_blocks();
    nsc_tensor *t = read_literal("{\"dtype\": \"f32\", \"shape\": [3], \"data\": "
                                 "[3.4028235e38, -3.4028235e38, 3.4028235677973362e38]}");
    cr_assert(t, "%s", nsc_last_error());
    const float *v = nsc_tensor_data(t);
    cr_expect(v[0] == FLT_MAX && v[1] == -FLT_MAX && v[2] == FLT_MAX, "%a %a %a", (double)v[0],
              (double)v[1], (double)v[2]);
    nsc_free(t);
    const char *over[] = { "3.4028235677973366e38", "-3.4028235677973366e38", "1e39" };
    const char *said[] = { "3.40282357e+38 is out of range for f32",
                           "-3.40282357e+38 is out of range for f32",
                           "1e+39 is out of range for f32" };
    for (int i = 0; i < 3; i++) {
        char text[128];
        snprintf(text, sizeof text, "{\"dtype\": \"f32\", \"shape\": [1], \"data\": [%s]}",
                 over[i]);
        cr_expect_null(read_literal(text), "%s read", over[i]);
        cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT);
        cr_expect(strstr(nsc_last_error(), said[i]), "%s", nsc_last_error());
    }
    nsc_clear_error();
    cr_expect_eq(nsct_live_blocks(), start, "nothing leaked");
}

// What the writer writes, the reader reads back to the same bits.
Test(numbers, extremes_round_trip_bit_for_bit) {
    const float f32[] = { FLT_MAX, -FLT_MAX, FLT_MIN, 0x1p-149f };
    const int64_t i64[] = { INT64_MAX, INT64_MIN, (1ll << 53) + 1, -(1ll << 53) - 1 };
    nsc_tensor *in[2] = { nsc_from_data(NSC_F32, NSC_SHAPE(4), f32),
                          nsc_from_data(NSC_I64, NSC_SHAPE(4), i64) };
    for (int i = 0; i < 2; i++) {
        nsci_buf b;
        nsci_buf_init(&b);
        cr_assert_eq(nsci_text_write_literal(&b, in[i]), NSC_OK, "%s", nsc_last_error());
        nsc_tensor *back = read_literal(b.data);
        cr_assert(back, "%s: %s", b.data, nsc_last_error());
        size_t bytes = 4 * nsc_dtype_size(nsc_tensor_dtype(in[i])); // 16 for f32, 32 for i64
        cr_expect(memcmp(nsc_tensor_data(back), nsc_tensor_data(in[i]), bytes) == 0, "%s", b.data);
        nsc_free(back);
        nsci_buf_free(&b);
        nsc_free(in[i]);
    }
}

// Integers print and copy out exactly, as torch prints them: through a
// double, 2^53 + 3 came out as 2^53 + 4 and INT64_MAX overflowed the
// conversion back (undefined behaviour).
Test(numbers, i64_prints_and_copies_exactly) {
    const int64_t v[4] = { INT64_MAX, INT64_MIN + 1, (1ll << 53) + 3, 0 };
    nsc_tensor *t = nsc_from_data(NSC_I64, NSC_SHAPE(2, 2), v);
    nsc_tensor *tt = nsc_transpose(t, 0, 1); // not contiguous: copied element by element
    char *text = nsct_printed(t), *text_t = nsct_printed(tt);
    cr_expect(strstr(text, "[[9223372036854775807, -9223372036854775807],") &&
                  strstr(text, "[9007199254740995, 0]]"),
              "%s", text);
    cr_expect(strstr(text_t, "[[9223372036854775807, 9007199254740995],"), "%s", text_t);
    int64_t got[4];
    cr_assert_eq(nsc_tensor_copy_to(tt, NSC_I64, got, sizeof got), NSC_OK, "%s", nsc_last_error());
    const int64_t want[4] = { INT64_MAX, (1ll << 53) + 3, INT64_MIN + 1, 0 };
    cr_expect(memcmp(got, want, sizeof got) == 0, "%lld %lld %lld %lld", (long long)got[0],
              (long long)got[1], (long long)got[2], (long long)got[3]);
    free(text);
    free(text_t);
    nsc_free(tt);
    nsc_free(t);
}
