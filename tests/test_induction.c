// The shipped model, models/induction (trained by examples/train_induction.c,
// docs/SHIPPED_MODEL.md): on fresh strings "s|s" it predicts the second copy
// (accuracy >= 90%) but not the first (<= 15%, chance-like), its vocabulary
// round-trips through the tokenizer, greedy generation after "abcde|"
// continues "abcde", and an edit of the first half is what the second half
// copies (the model reads the string, it has not memorized one). Loaded from
// the repository root (NSC_SOURCE_DIR when set); skipped where the model is
// absent.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"

enum {
    N_LETTERS = 26,
    SEP = 26, // '|'
    EOL = 27, // '\n'
    PER_LEN = 8, // strings per length in the accuracy check
    MIN_LEN = 4,
    MAX_LEN = 24,
};

// Thresholds (the recorded run reaches 99.57% and 0.95%; see docs/SHIPPED_MODEL.md).
#define MIN_COPY_ACC   0.90
#define MAX_FIRST_ACC  0.15

static nsc_module *g_model;
static nsc_tokenizer *g_tok;

static const char *model_dir(void) {
    static char dir[1024];
    const char *root = getenv("NSC_SOURCE_DIR");
    snprintf(dir, sizeof dir, "%s/models/induction", root ? root : ".");
    return dir;
}

static void load(void) {
    char path[1100];
    snprintf(path, sizeof path, "%s/model.safetensors", model_dir());
    if (access(path, R_OK) != 0) {
        cr_skip_test("%s is not in this checkout", model_dir());
    }
    g_model = nsc_gpt2_load(model_dir());
    cr_assert(g_model, "%s: %s", model_dir(), nsc_last_error());
    g_tok = nsc_tokenizer_load(model_dir());
    cr_assert(g_tok, "%s: %s", model_dir(), nsc_last_error());
    for (int64_t i = 0; i < nsc_module_n_modules(g_model); i++) {
        nsc_module_path(nsc_module_at(g_model, i)); // cached paths: not leaks
    }
}

static void unload(void) {
    nsc_module_free(g_model);
    nsc_tokenizer_free(g_tok);
}

// n rows "s|s" (no final newline: inputs only) of random strings of length
// len: [n, 2 len + 1].
static nsc_tensor *make_rows(nsc_generator *gen, int64_t n, int64_t len) {
    int64_t t = 2 * len + 1;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)(n * t));
    cr_assert(ids);
    for (int64_t b = 0; b < n; b++) {
        int64_t *row = ids + b * t;
        for (int64_t k = 0; k < len; k++) {
            row[k] = row[len + 1 + k] = nsc_generator_next_u32(gen) % N_LETTERS;
        }
        row[len] = SEP;
    }
    nsc_tensor *x = nsc_from_data(NSC_I64, NSC_SHAPE(n, t), ids);
    free(ids);
    cr_assert(x, "%s", nsc_last_error());
    return x;
}

// Argmax predictions [n, t] of the model on rows, copied out (caller frees).
static int64_t *predict(nsc_tensor *rows) {
    int64_t numel = nsc_tensor_numel(rows);
    nsc_no_grad_begin();
    nsc_tensor *logits = nsc_module_call(g_model, 1, &rows);
    nsc_tensor *pred = nsc_argmax(logits, 2, false);
    nsc_no_grad_end();
    cr_assert(pred, "%s", nsc_last_error());
    int64_t *p = malloc(sizeof(int64_t) * (size_t)numel);
    cr_assert(p);
    cr_assert_eq(nsc_tensor_copy_to(pred, NSC_I64, p, sizeof(int64_t) * (size_t)numel), NSC_OK);
    nsc_free(logits);
    nsc_free(pred);
    return p;
}

Test(induction, copies_the_second_half_and_guesses_the_first, .init = load, .fini = unload) {
    int64_t before = nsct_live_blocks();
    nsc_generator *gen = nsc_generator_new(20240601); // never the training or eval seeds
    int64_t copy_hits = 0, copy_n = 0, first_hits = 0, first_n = 0;
    for (int64_t len = MIN_LEN; len <= MAX_LEN; len++) {
        nsc_tensor *rows = make_rows(gen, PER_LEN, len);
        const int64_t *x = nsc_tensor_data(rows);
        int64_t t = 2 * len + 1, *p = predict(rows);
        for (int64_t b = 0; b < PER_LEN; b++) {
            // position i predicts x[i + 1]: the first copy's letters 1..len-1
            // from positions 0..len-2, the second copy from len..2 len - 1.
            for (int64_t i = 0; i + 1 < t; i++) {
                bool hit = p[b * t + i] == x[b * t + i + 1];
                if (i < len - 1) {
                    first_hits += hit, first_n++;
                } else if (i >= len) {
                    copy_hits += hit, copy_n++;
                }
            }
        }
        free(p);
        nsc_free(rows);
    }
    nsc_generator_free(gen);
    double copy = (double)copy_hits / (double)copy_n, first = (double)first_hits / (double)first_n;
    cr_expect_geq(copy, MIN_COPY_ACC, "second copy: %.4f of %lld letters", copy, (long long)copy_n);
    cr_expect_leq(first, MAX_FIRST_ACC, "first copy: %.4f of %lld letters", first,
                  (long long)first_n);
    cr_expect_eq(nsct_live_blocks(), before);
}

Test(induction, its_vocabulary_round_trips_through_the_tokenizer, .init = load, .fini = unload) {
    const char *text = "qzkfebmw|qzkfebmw\n";
    int64_t ids[32];
    int64_t n = nsc_tokenizer_encode(g_tok, text, strlen(text), ids, 32);
    cr_assert_eq(n, (int64_t)strlen(text), "%s", nsc_last_error());
    cr_expect_eq(ids[0], 'q' - 'a');
    cr_expect_eq(ids[8], SEP);
    cr_expect_eq(ids[17], EOL);
    char back[32];
    cr_assert_eq(nsc_tokenizer_decode(g_tok, ids, n, back, sizeof back), n);
    cr_expect_str_eq(back, text);
    cr_expect_eq(nsc_tokenizer_encode(g_tok, "A", 1, ids, 32), -1, "a capital is not in the vocabulary");
}

Test(induction, greedy_generation_continues_with_the_copy, .init = load, .fini = unload) {
    const char *prompt = "abcde|";
    nsc_tensor *ids = nsc_tokenizer_encode_tensor(g_tok, prompt, strlen(prompt));
    cr_assert(ids, "%s", nsc_last_error());
    nsc_tensor *row = nsc_reshape(ids, NSC_SHAPE(1, -1));
    nsc_generate_options options = nsc_generate_options_default();
    options.max_new_tokens = 6;
    nsc_tensor *tokens = NULL;
    cr_assert_eq(nsc_generate(g_model, row, NULL, &options, &tokens), NSC_OK, "%s",
                 nsc_last_error());
    char text[32];
    int64_t n = nsc_tensor_numel(tokens);
    cr_assert_eq(nsc_tokenizer_decode(g_tok, nsc_tensor_data(tokens), n, text, sizeof text), n);
    cr_expect_str_eq(text, "abcde|abcde\n");
    nsc_free(tokens);
    nsc_free(row);
    nsc_free(ids);
}

// The copy follows the first half, not a memorized string: change letter
// k + 1 of the first copy in every row (to the next letter of the alphabet)
// and the prediction after letter k of the second copy follows the change.
Test(induction, the_copy_follows_an_edit_of_the_first_half, .init = load, .fini = unload) {
    nsc_generator *gen = nsc_generator_new(777);
    int64_t hits = 0, n = 0;
    for (int64_t len = MIN_LEN; len <= MAX_LEN; len += 4) {
        nsc_tensor *rows = make_rows(gen, PER_LEN, len);
        int64_t t = 2 * len + 1, *x = nsc_tensor_data(rows);
        for (int64_t k = 0; k + 1 < len; k++) {
            int64_t *edited = malloc(sizeof(int64_t) * (size_t)(PER_LEN * t));
            cr_assert(edited);
            memcpy(edited, x, sizeof(int64_t) * (size_t)(PER_LEN * t));
            for (int64_t b = 0; b < PER_LEN; b++) {
                int64_t *row = edited + b * t;
                row[k + 1] = (row[k + 1] + 1) % N_LETTERS;
            }
            nsc_tensor *e = nsc_from_data(NSC_I64, NSC_SHAPE(PER_LEN, t), edited);
            int64_t *p = predict(e);
            for (int64_t b = 0; b < PER_LEN; b++) {
                hits += p[b * t + len + 1 + k] == edited[b * t + k + 1], n++;
            }
            free(p);
            free(edited);
            nsc_free(e);
        }
        nsc_free(rows);
    }
    nsc_generator_free(gen);
    double share = (double)hits / (double)n;
    cr_expect_geq(share, MIN_COPY_ACC, "%.4f of %lld edited letters followed", share, (long long)n);
}
