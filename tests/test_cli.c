// The nsc tool end to end (issue 9): every subcommand run as a process on
// a small random GPT-2 with the induction model's vocabulary, its output,
// the files it writes (read back with the library's own reader), and bad
// input: one line on stderr and the documented exit status.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/expect.h"
#include "tests/harness.h"

// A command's exit status and its stdout / stderr (caller frees).
typedef struct run_result {
    int code;
    char *out, *err;
} run_result;

static char g_dir[64]; // the test's scratch directory (model, outputs)

static const char *nsc_path(void) {
    static char path[512];
    const char *build = getenv("NSC_BUILD");
    snprintf(path, sizeof path, "%s/nsc", build ? build : "build/release");
    return path;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return strdup("");
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = calloc(1, (size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static run_result run(const char *args) {
    char cmd[4096], out[128], err[128];
    snprintf(out, sizeof out, "%s/stdout", g_dir);
    snprintf(err, sizeof err, "%s/stderr", g_dir);
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s", nsc_path(), args, out, err);
    int status = system(cmd);
    run_result r = { WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err) };
    return r;
}

static void result_free(run_result *r) {
    free(r->out);
    free(r->err);
}

static int lines(const char *s) {
    int n = 0;
    for (; *s; s++) {
        n += *s == '\n';
    }
    return n;
}

// Expects a failure: the exit code, one line on stderr holding want.
static void expect_fail(const char *args, int code, const char *want) {
    run_result r = run(args);
    cr_expect_eq(r.code, code, "nsc %s: exit %d, want %d (stderr: %s)", args, r.code, code, r.err);
    cr_expect_eq(lines(r.err), 1, "nsc %s: one line on stderr, got: %s", args, r.err);
    cr_expect(strstr(r.err, want), "nsc %s: \"%s\" not in: %s", args, want, r.err);
    result_free(&r);
}

// A graph text with one invoke of "prompt" and these node lines.
static void write_graph(const char *path, const char *nodes) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f,
            "{\"format\": \"nsc-graph\", \"version\": 1, \"trace\": {\n"
            "\"invokes\": [{\"inputs\": [{\"name\": \"prompt\"}]}], \"nodes\": [\n%s]}}\n",
            nodes);
    fclose(f);
}

// A random GPT-2 shaped like the shipped one (2 layers, 4 heads) with its
// character vocabulary, saved as a model directory.
static void make_model(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/nsc_cli_XXXXXX");
    cr_assert(mkdtemp(g_dir));
    nsc_gpt2_config c = nsc_gpt2_config_default();
    c.vocab_size = 28;
    c.n_positions = 64;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 4;
    c.resid_pdrop = c.embd_pdrop = c.attn_pdrop = 0;
    nsc_generator *gen = nsc_generator_new(7);
    nsc_module *m = nsc_gpt2_new(&c, gen);
    char path[128];
    snprintf(path, sizeof path, "%s/model", g_dir);
    cr_assert_eq(nsc_gpt2_save(m, path), NSC_OK, "%s", nsc_last_error());
    snprintf(path, sizeof path, "%s/model/vocab.json", g_dir);
    FILE *f = fopen(path, "w");
    fputs("{", f);
    for (int i = 0; i < 26; i++) {
        fprintf(f, "\"%c\": %d, ", 'a' + i, i);
    }
    fputs("\"|\": 26, \"\\n\": 27}", f);
    fclose(f);
    nsc_module_free(m);
    nsc_generator_free(gen);
}

static void remove_model(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(cli, .init = make_model, .fini = remove_model);

Test(cli, help_for_the_tool_and_every_subcommand) {
    run_result r = run("--help");
    cr_expect_eq(r.code, 0);
    cr_expect(strstr(r.out, "usage: nsc COMMAND") && strstr(r.out, "generate"), "%s", r.out);
    result_free(&r);
    const char *commands[] = { "info", "run", "generate", "scan", "dot" };
    for (int i = 0; i < 5; i++) {
        char args[64], want[64];
        snprintf(args, sizeof args, "%s --help", commands[i]);
        snprintf(want, sizeof want, "usage: nsc %s", commands[i]);
        r = run(args);
        cr_expect_eq(r.code, 0, "%s", args);
        cr_expect(strstr(r.out, want), "%s: %s", args, r.out);
        result_free(&r);
    }
    // --help wins wherever it stands, even where a value is expected or
    // after a bad one (it used to become the prompt, or lose to the error).
    const char *anywhere[] = { "generate --prompt --help", "run --length zero --help",
                               "info --device cuda -h", "dot --help --bogus" };
    for (int i = 0; i < 4; i++) {
        char want[64];
        snprintf(want, sizeof want, "usage: nsc %.*s", (int)strcspn(anywhere[i], " "), anywhere[i]);
        r = run(anywhere[i]);
        cr_expect_eq(r.code, 0, "%s: %s", anywhere[i], r.err);
        cr_expect(strstr(r.out, want), "%s: %s", anywhere[i], r.out);
        result_free(&r);
    }
    r = run("");
    cr_expect_eq(r.code, 2, "no command: usage on stderr, status 2");
    cr_expect(strstr(r.err, "usage"));
    result_free(&r);
    expect_fail("frobnicate", 2, "unknown command \"frobnicate\"");
}

Test(cli, info_lists_modules_shapes_and_parameters) {
    char args[256];
    snprintf(args, sizeof args, "info %s/model --length 5", g_dir);
    run_result r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "2 layers, 4 heads of 8, n_embd 32, vocab 28"), "%s", r.out);
    cr_expect(strstr(r.out, "transformer.h.1.attn.hook_z") && strstr(r.out, "[1,5,4,8] f32"), "%s",
              r.out);
    cr_expect(strstr(r.out, "[1,5,28] f32"), "the logits' shape: %s", r.out);
    result_free(&r);
    expect_fail("info /nonexistent/model", 1, "nsc info: /nonexistent/model: no such model");
    snprintf(args, sizeof args, "info %s/model --length zero", g_dir);
    expect_fail(args, 2, "--length");
    snprintf(args, sizeof args, "info %s/model --bogus", g_dir);
    expect_fail(args, 2, "unexpected argument \"--bogus\"");
}

Test(cli, run_saves_every_named_value_readable_by_the_library) {
    char args[512], out[128], model_dir[128];
    snprintf(model_dir, sizeof model_dir, "%s/model", g_dir);
    snprintf(out, sizeof out, "%s/lens.safetensors", g_dir);
    snprintf(args, sizeof args,
             "run %s --graph examples/graphs/logit_lens.json --prompt "
             "'abc|ab' --save %s",
             model_dir, out);
    run_result r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "top.h.1") && strstr(r.out, "[1,6] i64"), "%s", r.out);
    result_free(&r);
    nsc_tensor_set *set = nsc_tensor_set_load(out);
    cr_assert(set, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_set_count(set), 6, "top and prob after embed, h.0, h.1");
    // The last readout is the model's own prediction.
    nsc_module *model = nsc_gpt2_load(model_dir);
    int64_t ids[6] = { 0, 1, 2, 26, 0, 1 };
    nsc_tensor *x = nsc_from_data(NSC_I64, NSC_SHAPE(1, 6), ids);
    nsc_tensor *logits = nsc_module_forward(model, 1, &x);
    nsc_tensor *want = nsc_argmax(logits, -1, false);
    cr_expect(nsc_allclose(nsc_tensor_set_get(set, "top.h.1"), want, 0, 0, false), "%s",
              nsc_last_error());
    nsc_tensor *all[] = { x, logits, want };
    for (int i = 0; i < 3; i++) {
        nsc_free(all[i]);
    }
    nsc_module_free(model);
    nsc_tensor_set_free(set);
}

// i64 values print exactly (torch's digits): through a double, 2^63 - 1
// printed as 9223372036854775808 and 2^53 + 3 as 2^53 + 4.
Test(cli, i64_values_print_exactly) {
    char graph[128], args[512];
    snprintf(graph, sizeof graph, "%s/i64.json", g_dir);
    write_graph(graph,
                "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"transformer.wte\", "
                "\"kind\": \"input\", \"invoke\": 0},\n"
                "{\"id\": 1, \"protocol\": \"Value\", \"tensor\": {\"dtype\": \"i64\", "
                "\"shape\": [4], \"data\": [9223372036854775807, -9223372036854775808, "
                "9007199254740993, 0]}},\n"
                "{\"id\": 2, \"protocol\": \"Op\", \"op\": \"add\", \"args\": [0, 1]},\n"
                "{\"id\": 3, \"protocol\": \"Lock\", \"name\": \"sum\", \"args\": [2]}\n");
    snprintf(args, sizeof args, "run %s/model --graph %s --prompt 'abc|'", g_dir, graph);
    run_result r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "9223372036854775807 -9223372036854775807 9007199254740995 26"), "%s",
              r.out);
    result_free(&r);
}

// --profile: the op table of the run on stderr, the run's output unchanged;
// the META-only commands refuse it.
Test(cli, profile_prints_the_op_table_on_stderr) {
    char args[512];
    snprintf(args, sizeof args,
             "run %s/model --graph examples/graphs/logit_lens.json --prompt 'abc|ab' --profile",
             g_dir);
    run_result r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "top.h.1") && !strstr(r.out, "op profile"), "%s", r.out);
    cr_expect(strstr(r.err, "nsc run: op profile\nop "), "%s", r.err);
    cr_expect(strstr(r.err, "\nlinear ") && strstr(r.err, " cpu ") && strstr(r.err, "\ntotal "),
              "%s", r.err);
    result_free(&r);
    snprintf(args, sizeof args, "generate %s/model --prompt 'abc|ab' --max-new-tokens 3 --profile",
             g_dir);
    r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.err, "nsc generate: op profile\n") && strstr(r.err, "\ntotal "), "%s",
              r.err);
    result_free(&r);
    snprintf(args, sizeof args, "info %s/model --profile", g_dir);
    expect_fail(args, 2, "nsc info: --profile: only run and generate compute");
    if (nsc_cuda_available()) { // the GPU's rows (event times)
        snprintf(args, sizeof args,
                 "run %s/model --graph examples/graphs/logit_lens.json --prompt 'abc|ab' "
                 "--device cuda --profile",
                 g_dir);
        r = run(args);
        cr_assert_eq(r.code, 0, "%s", r.err);
        cr_expect(strstr(r.err, "\nlinear ") && strstr(r.err, " cuda "), "%s", r.err);
        result_free(&r);
    }
}

Test(cli, run_refuses_bad_input_with_one_line) {
    char args[512], bad[128];
    const char *m = g_dir;
    snprintf(args, sizeof args, "run %s/model --prompt ab", m);
    expect_fail(args, 2, "--graph G.json is required");
    snprintf(args, sizeof args, "run %s/model --graph /nonexistent.json --prompt ab", m);
    expect_fail(args, 1, "/nonexistent.json");
    snprintf(bad, sizeof bad, "%s/bad.json", m);
    FILE *f = fopen(bad, "w");
    fputs("{\"format\": \"nsc-graph\", \"version\": 1,\n \"trace\": {\"nodes\": [}}", f);
    fclose(f);
    snprintf(args, sizeof args, "run %s/model --graph %s --prompt ab", m, bad);
    expect_fail(args, 1, "line 2, column");
    snprintf(args, sizeof args,
             "run %s/model --graph examples/graphs/logit_lens.json "
             "--prompt ABC",
             m);
    expect_fail(args, 1, "--prompt");
    // Malformed ids are a bad command line (exit 2), named by the command.
    const char *malformed[] = { "1,x", "1,2,", ",1", "1,,2", "-1", "' 1'", "1,+2", "''" };
    for (int i = 0; i < 8; i++) {
        snprintf(args, sizeof args,
                 "run %s/model --graph examples/graphs/logit_lens.json --tokens %s", m,
                 malformed[i]);
        expect_fail(args, 2, "nsc run: --tokens ");
    }
    snprintf(args, sizeof args,
             "run %s/model --graph examples/graphs/logit_lens.json "
             "--tokens 1,99",
             m);
    expect_fail(args, 1, "99");
    snprintf(args, sizeof args, "run %s/model --graph examples/graphs/logit_lens.json", m);
    expect_fail(args, 1, "no tensor named \"prompt\"");
    snprintf(args, sizeof args,
             "run %s/model --graph examples/graphs/logit_lens.json "
             "--prompt ab --tokens 1",
             m);
    expect_fail(args, 2, "nsc run: give --prompt or --tokens, not both");
    snprintf(args, sizeof args,
             "run %s/model --graph examples/graphs/logit_lens.json "
             "--prompt ab --save /nonexistent/dir/out.safetensors",
             m);
    expect_fail(args, 1, "/nonexistent/dir/out.safetensors");
}

Test(cli, every_example_graph_scans_and_runs) {
    const char *graphs[] = { "logit_lens", "patching", "attribution_patching", "head_ablation" };
    for (int i = 0; i < 4; i++) {
        char args[512];
        // Only the logit lens reads "prompt"; the others hold their inputs.
        const char *prompt = i == 0 ? "--prompt 'qzkfebmw|qz'" : "";
        snprintf(args, sizeof args, "scan %s/model --graph examples/graphs/%s.json %s", g_dir,
                 graphs[i], prompt);
        run_result r = run(args);
        cr_expect_eq(r.code, 0, "%s: %s", graphs[i], r.err);
        cr_expect(strstr(r.out, "ok: ") && strstr(r.out, "Intervention"), "%s", r.out);
        result_free(&r);
        snprintf(args, sizeof args, "run %s/model --graph examples/graphs/%s.json %s", g_dir,
                 graphs[i], prompt);
        r = run(args);
        cr_expect_eq(r.code, 0, "%s: %s", graphs[i], r.err);
        result_free(&r);
    }
    char args[512], bad[128];
    snprintf(bad, sizeof bad, "%s/shape.json", g_dir);
    write_graph(bad, "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": "
                     "\"transformer.h.0\", \"invoke\": 0},\n{\"id\": 1, \"protocol\": \"Op\", "
                     "\"op\": \"matmul\", \"args\": [0, 0]}");
    snprintf(args, sizeof args, "scan %s/model --graph %s --length 3", g_dir, bad);
    expect_fail(args, 1, "shape.json:4:1: matmul");
}

// The values two --save files hold agree within tol, name by name.
static void expect_same_values(const char *a_path, const char *b_path, const char *what) {
    nsc_tensor_set *a = nsc_tensor_set_load(a_path), *b = nsc_tensor_set_load(b_path);
    cr_assert(a && b, "%s: %s", what, nsc_last_error());
    cr_expect_eq(nsc_tensor_set_count(a), nsc_tensor_set_count(b), "%s: value counts", what);
    for (int64_t i = 0; i < nsc_tensor_set_count(a); i++) {
        const char *name = nsc_tensor_set_name(a, i);
        nsc_tensor *other = nsc_tensor_set_get(b, name);
        cr_expect(other, "%s: %s missing", what, name);
        if (other) {
            char label[256];
            snprintf(label, sizeof label, "%s: %s", what, name);
            nsct_expect_close(other, nsc_tensor_set_at(a, i),
                              (nsct_tol){ 1e-3, 1e-3, "cuda vs cpu: a whole f32 run" }, label);
        }
    }
    nsc_tensor_set_free(a);
    nsc_tensor_set_free(b);
}

// --device cuda: with a GPU (or the CUDA emulator) every example graph saves
// what the CPU saves (within 1e-3) and steered generation gives the same
// text; without one, one line saying why. META commands refuse the option.
Test(cli, device_cuda_gives_the_cpu_output_or_says_why_not) {
    char args[640];
    bool gpu = nsc_cuda_available();
    const char *graphs[] = { "patching", "attribution_patching", "head_ablation", "logit_lens" };
    for (int i = 0; i < 4; i++) {
        const char *where[2] = { "cpu", "cuda" };
        char saved[2][160];
        for (int d = 0; d < 2; d++) {
            snprintf(saved[d], sizeof saved[d], "%s/%s.%s.safetensors", g_dir, graphs[i], where[d]);
            snprintf(args, sizeof args,
                     "run %s/model --graph examples/graphs/%s.json %s --save %s --device %s", g_dir,
                     graphs[i], i == 3 ? "--prompt 'qzkfebmw|qz'" : "", saved[d], where[d]);
            if (d == 1 && !gpu) {
                expect_fail(args, 1, "--device cuda");
                break;
            }
            run_result r = run(args);
            cr_expect_eq(r.code, 0, "%s on %s: %s", graphs[i], where[d], r.err);
            cr_expect(d == 0 || strstr(r.out, "(cuda)"), "%s: ran on the GPU: %s", graphs[i],
                      r.out);
            result_free(&r);
        }
        if (gpu) {
            expect_same_values(saved[0], saved[1], graphs[i]);
        }
    }
    snprintf(args, sizeof args,
             "generate %s/model --prompt 'ab|' --max-new-tokens 5 --graph "
             "examples/graphs/steering.json",
             g_dir);
    run_result cpu = run(args);
    strncat(args, " --device cuda", sizeof args - strlen(args) - 1);
    if (gpu) {
        run_result on_gpu = run(args);
        cr_expect_eq(on_gpu.code, 0, "%s", on_gpu.err);
        cr_expect_str_eq(on_gpu.out, cpu.out, "steered generation on cuda");
        result_free(&on_gpu);
    } else {
        expect_fail(args, 1, "--device cuda");
    }
    result_free(&cpu);
    snprintf(args, sizeof args, "run %s/model --graph examples/graphs/patching.json --device tpu",
             g_dir);
    expect_fail(args, 2, "--device tpu: not a valid value");
    snprintf(args, sizeof args, "scan %s/model --graph examples/graphs/patching.json --device cuda",
             g_dir);
    expect_fail(args, 2, "only run and generate compute");
    // info, scan and dot refuse --device cpu too (docs/CLI.md): they work on META.
    const char *meta_only[] = { "info %s/model --device cpu",
                                "scan %s/model --graph examples/graphs/patching.json --device cpu",
                                "dot examples/graphs/patching.json --model %s/model --device cpu" };
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, meta_only[i], g_dir);
        expect_fail(args, 2, "--device: only run and generate compute");
    }
}

Test(cli, generate_greedy_sampled_and_steered) {
    char args[512];
    snprintf(args, sizeof args, "generate %s/model --prompt 'ab|' --max-new-tokens 4", g_dir);
    run_result r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    size_t n = strlen(r.out); // a newline ends the text unless it ends in one
    cr_expect(strncmp(r.out, "ab|", 3) == 0 && n >= 7 && n == 7 + (r.out[6] != '\n'), "%s", r.out);
    result_free(&r);
    snprintf(args, sizeof args,
             "generate %s/model --prompt 'ab|' --max-new-tokens 6 "
             "--temperature 1.5 --top-k 5 --seed 3",
             g_dir);
    run_result a = run(args), b = run(args);
    cr_expect_eq(a.code, 0, "%s", a.err);
    cr_expect_str_eq(a.out, b.out, "the same seed gives the same text");
    result_free(&a);
    result_free(&b);
    snprintf(args, sizeof args,
             "generate %s/model --prompt 'ab|' --max-new-tokens 5 --graph "
             "examples/graphs/steering.json",
             g_dir);
    r = run(args);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect(strncmp(r.out, "ab|", 3) == 0, "%s", r.out);
    result_free(&r);
    // Saved values are listed after the text, the tokens not among them.
    snprintf(args, sizeof args,
             "generate %s/model --prompt 'ab|ab' --max-new-tokens 2 --graph "
             "examples/graphs/logit_lens.json",
             g_dir);
    r = run(args);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "saved values:") && !strstr(r.out, "generated"), "%s", r.out);
    result_free(&r);
    snprintf(args, sizeof args, "generate %s/model --max-new-tokens 4", g_dir);
    expect_fail(args, 2, "--prompt TEXT");
    snprintf(args, sizeof args, "generate %s/model --prompt ab --temperature -1", g_dir);
    expect_fail(args, 2, "--temperature");
    char late[128];
    snprintf(late, sizeof late, "%s/late.json", g_dir);
    write_graph(late, "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"\", "
                      "\"call\": 9, \"invoke\": 0}");
    snprintf(args, sizeof args, "generate %s/model --prompt ab --max-new-tokens 3 --graph %s",
             g_dir, late);
    expect_fail(args, 1, "call index 9 is unreachable");
}

// The summary counts the tokens added, which a stop token makes fewer than
// --max-new-tokens (NSC_PROGRESS=1 prints it for a run under a second).
Test(cli, generate_counts_the_tokens_a_stop_token_left) {
    char args[512];
    cr_assert_eq(setenv("NSC_PROGRESS", "1", 1), 0);
    snprintf(args, sizeof args, "generate %s/model --prompt 'ab|' --max-new-tokens 6", g_dir);
    run_result r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.err, "nsc generate: 6 tokens in"), "%s", r.err);
    char first = r.out[3]; // the first generated character: a-z, | or newline
    int id = first == '|' ? 26 : first == '\n' ? 27 : first - 'a';
    cr_assert(id >= 0 && id < 28, "%s", r.out);
    result_free(&r);
    snprintf(args, sizeof args,
             "generate %s/model --prompt 'ab|' --max-new-tokens 6 --stop-token %d", g_dir, id);
    r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.err, "nsc generate: 1 tokens in"), "stop token %d: %s", id, r.err);
    // One line: a newline is added unless the text ends in one.
    cr_expect_eq(strlen(r.out), 3 + 1 + (id != 27), "%s", r.out);
    result_free(&r);
    unsetenv("NSC_PROGRESS");
}

// Without --stop-token generate stops at the config's eos_token_id, as
// Hugging Face's generate does; --stop-token -1 runs to --max-new-tokens.
Test(cli, generate_stops_at_the_config_eos) {
    char args[512];
    cr_assert_eq(setenv("NSC_PROGRESS", "1", 1), 0);
    snprintf(args, sizeof args, "generate %s/model --prompt 'ab|' --max-new-tokens 6", g_dir);
    run_result r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char first = r.out[3];
    int id = first == '|' ? 26 : first == '\n' ? 27 : first - 'a';
    result_free(&r);
    // The same weights with eos_token_id = the first generated token.
    snprintf(args, sizeof args,
             "cp -r %s/model %s/eos && sed -i 's/\"eos_token_id\": [0-9]*/\"eos_token_id\": %d/' "
             "%s/eos/config.json",
             g_dir, g_dir, id, g_dir);
    cr_assert_eq(system(args), 0);
    snprintf(args, sizeof args, "generate %s/eos --prompt 'ab|' --max-new-tokens 6", g_dir);
    r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.err, "nsc generate: 1 tokens in"), "eos %d: %s", id, r.err);
    result_free(&r);
    snprintf(args, sizeof args, "generate %s/eos --prompt 'ab|' --max-new-tokens 6 --stop-token -1",
             g_dir);
    r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.err, "nsc generate: 6 tokens in"), "no stop: %s", r.err);
    result_free(&r);
    unsetenv("NSC_PROGRESS");
}

// --top-k 0 samples without top-k filtering (Hugging Face's top_k=0): the
// text of --temperature 1 with the same seed, not the greedy one.
Test(cli, generate_top_k_0_samples_without_filtering) {
    char args[512];
    const char *flags[] = { "", "--top-k 0 --seed 5", "--temperature 1 --seed 5",
                            "--top-k 28 --seed 5" };
    run_result r[4];
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "generate %s/model --prompt 'ab|' --max-new-tokens 12 %s",
                 g_dir, flags[i]);
        r[i] = run(args);
        cr_assert_eq(r[i].code, 0, "%s: %s", flags[i], r[i].err);
    }
    cr_expect_str_neq(r[1].out, r[0].out, "--top-k 0 samples: %s", r[1].out);
    cr_expect_str_eq(r[1].out, r[2].out, "--top-k 0 keeps every logit");
    cr_expect_str_eq(r[1].out, r[3].out, "--top-k 0 is --top-k V");
    for (int i = 0; i < 4; i++) {
        result_free(&r[i]);
    }
}

// A graph holding its own inputs (two rows here) generates without
// --prompt: one line per row, and the summary counts the tokens added to
// the graph's inputs. A --prompt it would ignore is refused.
Test(cli, generate_prints_every_row_of_a_graph_batch) {
    char graph[128], args[512];
    snprintf(graph, sizeof graph, "%s/rows.json", g_dir);
    FILE *f = fopen(graph, "w");
    cr_assert(f);
    fputs("{\"format\": \"nsc-graph\", \"version\": 1, \"trace\": {\"invokes\": [\n"
          "{\"inputs\": [{\"dtype\": \"i64\", \"shape\": [1, 3], \"data\": [0, 1, 26]}]},\n"
          "{\"inputs\": [{\"dtype\": \"i64\", \"shape\": [1, 3], \"data\": [2, 3, 26]}]}],\n"
          "\"nodes\": []}}\n",
          f);
    fclose(f);
    // The rows nsc_generate gives, as text (28 ids: a-z, |, newline).
    snprintf(args, sizeof args, "%s/model", g_dir);
    nsc_module *model = nsc_gpt2_load(args);
    cr_assert(model, "%s", nsc_last_error());
    int64_t ids[6] = { 0, 1, 26, 2, 3, 26 };
    nsc_tensor *x = nsc_from_data(NSC_I64, NSC_SHAPE(2, 3), ids), *tokens = NULL;
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 4;
    cr_assert_eq(nsc_generate(model, x, NULL, &o, &tokens), NSC_OK, "%s", nsc_last_error());
    int64_t got[14];
    cr_assert_eq(nsc_tensor_copy_to(tokens, NSC_I64, got, sizeof got), NSC_OK);
    char want[32] = "";
    for (int b = 0; b < 2; b++) {
        size_t n = strlen(want);
        for (int j = 0; j < 7; j++) {
            int64_t id = got[b * 7 + j];
            want[n++] = id == 26 ? '|' : id == 27 ? '\n' : (char)('a' + id);
        }
        want[n] = '\0';
        if (want[n - 1] != '\n') {
            strcat(want, "\n");
        }
    }
    nsc_free(tokens);
    nsc_free(x);
    nsc_module_free(model);
    cr_assert_eq(setenv("NSC_PROGRESS", "1", 1), 0);
    snprintf(args, sizeof args, "generate %s/model --graph %s --max-new-tokens 4", g_dir, graph);
    run_result r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_str_eq(r.out, want, "one line per row");
    cr_expect(strstr(r.err, "nsc generate: 4 tokens in"), "%s", r.err);
    result_free(&r);
    unsetenv("NSC_PROGRESS");
    const char *ignored[] = { "generate %s/model --graph %s --prompt ab",
                              "generate %s/model --graph %s --tokens 1,2",
                              "run %s/model --graph %s --prompt ab",
                              "scan %s/model --graph %s --prompt ab",
                              "scan %s/model --graph %s --length 5" };
    for (int i = 0; i < 5; i++) {
        snprintf(args, sizeof args, ignored[i], g_dir, graph);
        expect_fail(args, 2, "the graph holds its own inputs");
    }
}

// Each command refuses an option it would ignore, and a repeated option
// (docs/CLI.md: exit 2 for a bad command line).
Test(cli, options_a_command_does_not_take_are_refused) {
    char args[512];
    const char *m = g_dir;
    struct {
        const char *args, *want;
    } cases[] = {
        { "generate %s/model --prompt ab --save x.safetensors",
          "nsc generate: --save: not an option of generate" },
        { "info %s/model --graph g.json", "nsc info: --graph: not an option of info" },
        { "info %s/model --temperature 0.5", "nsc info: --temperature: not an option" },
        { "run %s/model --graph g.json --max-new-tokens 3", "nsc run: --max-new-tokens: not an" },
        { "run %s/model --graph g.json --length 3", "nsc run: --length: not an option" },
        { "scan %s/model --graph g.json --save x", "nsc scan: --save: not an option" },
        { "dot g.json --model %s/model --top-k 3", "nsc dot: --top-k: not an option" },
        { "run %s/model --graph g.json --graph g.json", "nsc run: --graph: given twice" },
        { "generate %s/model --prompt a --prompt b", "nsc generate: --prompt: given twice" },
        { "info %s/model --model other", "nsc info: --model: given twice" },
        { "dot g.json --graph g.json --model %s/model", "nsc dot: --graph: given twice" },
        { "generate %s/model --prompt a --seed 1 --seed 2", "--seed: given twice" },
        { "scan %s/model --graph g.json --prompt ab --length 3",
          "nsc scan: --length: only without --prompt or --tokens" },
        { "generate %s/model --prompt ab --tensors none.safetensors",
          "nsc generate: --tensors: only with --graph" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, cases[i].args, m);
        expect_fail(args, 2, cases[i].want);
    }
}

Test(cli, dot_writes_graphviz) {
    char args[512], out[128];
    snprintf(args, sizeof args, "dot examples/graphs/logit_lens.json --model %s/model", g_dir);
    run_result r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strncmp(r.out, "digraph", 7) == 0 && strstr(r.out, "ApplyModule"), "%s", r.out);
    result_free(&r);
    snprintf(out, sizeof out, "%s/g.dot", g_dir);
    snprintf(args, sizeof args, "dot examples/graphs/head_ablation.json --model %s/model -o %s",
             g_dir, out);
    r = run(args);
    cr_expect_eq(r.code, 0, "%s", r.err);
    char *dot = slurp(out);
    cr_expect(strstr(dot, "digraph") && strstr(dot, "zero_"), "%s", dot);
    free(dot);
    result_free(&r);
    expect_fail("dot", 2, "expected a graph file");
    snprintf(args, sizeof args, "dot /nonexistent.json --model %s/model", g_dir);
    expect_fail(args, 1, "/nonexistent.json");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// On the shipped model the patching graph shows the induction pattern: one
// localized cell at least 5x the median of the table.
Test(cli, the_shipped_model_localizes_patching) {
    if (access("models/induction/model.safetensors", R_OK) != 0) {
        cr_skip_test("models/induction is not in this checkout");
    }
    char args[512], out[128];
    snprintf(out, sizeof out, "%s/patching.safetensors", g_dir);
    snprintf(args, sizeof args,
             "run models/induction --graph examples/graphs/patching.json "
             "--save %s",
             out);
    run_result r = run(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    result_free(&r);
    nsc_tensor_set *set = nsc_tensor_set_load(out);
    cr_assert(set);
    double clean = nsc_tensor_item(nsc_tensor_set_get(set, "ld.clean"));
    double corrupt = nsc_tensor_item(nsc_tensor_set_get(set, "ld.corrupt"));
    double cells[64], best = 0;
    int n = 0;
    for (int64_t i = 0; i < nsc_tensor_set_count(set) && n < 64; i++) {
        const char *name = nsc_tensor_set_name(set, i);
        if (strcmp(name, "ld.clean") != 0 && strcmp(name, "ld.corrupt") != 0) {
            double v = (nsc_tensor_item(nsc_tensor_set_at(set, i)) - corrupt) / (clean - corrupt);
            cells[n++] = fabs(v);
            best = fabs(v) > best ? fabs(v) : best;
        }
    }
    qsort(cells, (size_t)n, sizeof *cells, cmp_double);
    double median = cells[n / 2];
    cr_expect_gt(clean, corrupt, "the clean prompt prefers f");
    cr_expect_geq(best, 5 * median, "best cell %.3f, median %.3f", best, median);
    cr_expect_geq(best, 0.5);
    nsc_tensor_set_free(set);
}

// The committed example graphs are what the examples write now (regenerate
// with build/release/examples/<name> --graph-out examples/graphs/<name>.json).
Test(cli, example_graphs_are_canonical) {
    char model_dir[128];
    snprintf(model_dir, sizeof model_dir, "%s/model", g_dir);
    nsc_module *model = nsc_gpt2_load(model_dir);
    int64_t ids[4] = { 0, 1, 26, 0 };
    nsc_tensor *prompt = nsc_from_data(NSC_I64, NSC_SHAPE(1, 4), ids);
    nsc_tensor_set *tensors = nsc_tensor_set_new();
    nsc_tensor_set_put(tensors, "prompt", prompt);
    const char *graphs[] = { "logit_lens", "patching", "attribution_patching", "head_ablation",
                             "steering" };
    for (int i = 0; i < 5; i++) {
        char path[128];
        snprintf(path, sizeof path, "examples/graphs/%s.json", graphs[i]);
        nsc_graph_load_options o = { .n_models = 1, .models = &model, .tensors = tensors };
        nsc_graph *g = nsc_graph_load(path, &o);
        cr_assert(g, "%s", nsc_last_error());
        char *text = nsc_graph_to_text(g), *file = slurp(path);
        cr_expect_str_eq(text, file, "%s is canonical", path);
        nsc_text_free(text);
        free(file);
        nsc_graph_free(g);
    }
    nsc_tensor_set_free(tensors);
    nsc_free(prompt);
    nsc_module_free(model);
}

// A "prompt" from --tensors is the prompt: --prompt or --tokens beside it
// is refused (one silently replaced the other), and scan checks it rather
// than --length zeros (it said ok for a graph that run then refused).
Test(cli, a_prompt_from_tensors_is_not_replaced) {
    char path[256], args[640];
    snprintf(path, sizeof path, "%s/prompt_f32.safetensors", g_dir);
    nsc_tensor_set *set = nsc_tensor_set_new();
    nsc_tensor *wrong = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(1, 3)); // ids must be i64
    cr_assert_eq(nsc_tensor_set_put(set, "prompt", wrong), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_tensor_set_save(set, path), NSC_OK, "%s", nsc_last_error());
    nsc_tensor_set_free(set);
    nsc_free(wrong);
    snprintf(args, sizeof args,
             "run %s/model --graph examples/graphs/logit_lens.json --tensors %s --prompt ab", g_dir,
             path);
    expect_fail(args, 2, "holds a tensor named \"prompt\" already");
    snprintf(args, sizeof args,
             "scan %s/model --graph examples/graphs/logit_lens.json --tensors %s", g_dir, path);
    expect_fail(args, 1, "input_ids [1,3] f32: expected [B, T] i64");
}
