// libFuzzer target: the graph text reader (graph/text_*.c) on arbitrary
// bytes. A parse either fails with an error naming the input (nothing
// leaked), or builds a graph whose text reads back to a graph with the same
// text (the canonical form is a fixed point). Texts naming "transformer."
// are built against the tiny GPT-2 fixture, others against the chain model
// of the graph tests. Graphs are not run (a text may ask for huge values).
// See fuzz/README.md; seeds in fuzz/seeds/graph_text/.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph/text_impl.h"
#include "nsc.h"
#include "tests/graph_models.c" // the chain model (one file per target: included here)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

static nsc_module *g_chain[2], *g_gpt2[2];
static nsc_tensor_set *g_tensors;

static nsc_tensor *double_it(int n, nsc_tensor *const *args, void *ctx) {
    (void)n;
    (void)ctx;
    return nsc_mul_scalar(args[0], 2.0);
}

// Module paths are cached on first use: compute them all once.
static void warm(nsc_module *m) {
    for (int64_t i = 0; i < nsc_module_n_modules(m); i++) {
        nsc_module_path(nsc_module_at(m, i));
    }
}

static void setup(void) {
    const char *root = getenv("NSC_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/gpt2_tiny", root ? root : ".");
    for (int i = 0; i < 2; i++) {
        g_chain[i] = nsct_chain_model(3, 4);
        g_gpt2[i] = nsc_gpt2_load(path);
        check(g_chain[i] && g_gpt2[i]);
        warm(g_chain[i]);
        warm(g_gpt2[i]);
    }
    int64_t ids[6] = { 16, 25, 10, 5, 26, 16 };
    nsc_tensor *prompt = nsc_from_data(NSC_I64, NSC_SHAPE(1, 6), ids);
    nsc_tensor *x = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4), 0.5);
    g_tensors = nsc_tensor_set_new();
    check(nsc_tensor_set_put(g_tensors, "prompt", prompt) == NSC_OK);
    check(nsc_tensor_set_put(g_tensors, "x", x) == NSC_OK);
    nsc_free(prompt);
    nsc_free(x);
    nsc_function_register("nsct_affine", double_it, NULL);
    nsc_function_register("fz", double_it, NULL);
}

static bool mentions(const uint8_t *data, size_t size, const char *word) {
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= size; i++) {
        if (memcmp(data + i, word, n) == 0) {
            return true;
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    int64_t before = nsc_mem_stats_get().live_blocks;
    bool gpt2 = mentions(data, size, "transformer.");
    nsc_graph_load_options o = { .n_models = 2,
                                 .models = gpt2 ? g_gpt2 : g_chain,
                                 .tensors = g_tensors,
                                 .max_bytes = 1 << 20,
                                 .max_nodes = 4096 };
    nsc_graph *g = nsc_graph_parse((const char *)data, size, "fuzz", &o);
    if (!g) {
        check(nsc_last_status() != NSC_OK && nsc_last_error()[0] != '\0');
    } else {
        char *text = nsc_graph_to_text(g);
        check(text != NULL);
        nsc_graph *again = nsc_graph_parse(text, strlen(text), "fuzz again", &o);
        check(again != NULL);
        char *text2 = nsc_graph_to_text(again);
        check(text2 && strcmp(text, text2) == 0);
        nsc_text_free(text);
        nsc_text_free(text2);
        nsc_graph_free(again);
        nsc_graph_free(g);
    }
    nsc_mem_trim();
    check(nsc_mem_stats_get().live_blocks == before);
    return 0;
}
