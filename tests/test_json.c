// The strict JSON reader (util/json.c) and the text buffer (util/buf.c):
// values, escapes, numbers, Python's NaN/Infinity, every error with its line
// and column, the depth and size limits, out-of-memory, and no leaks.
#include <criterion/criterion.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nsc.h"
#include "tests/harness.h"
#include "util/util_impl.h"

static int64_t live_blocks(void) {
    return nsc_mem_stats_get().live_blocks;
}

static nsci_json_doc *parse(const char *text) {
    return nsci_json_parse(text, strlen(text), NULL, "test.json");
}

// Parses text expecting failure with a message containing want; checks no leak.
static void expect_error(const char *text, const char *want) {
    int64_t before = live_blocks();
    nsc_clear_error();
    nsci_json_doc *doc = parse(text);
    cr_expect_null(doc, "parsing <%s> should fail", text);
    nsci_json_doc_free(doc);
    cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT, "<%s>: status %s", text,
                 nsc_status_name(nsc_last_status()));
    cr_expect(strstr(nsc_last_error(), want) != NULL, "<%s>: message \"%s\" lacks \"%s\"", text,
              nsc_last_error(), want);
    cr_expect_eq(live_blocks(), before, "<%s>: %lld blocks leaked", text,
                 (long long)(live_blocks() - before));
}

Test(json, nested_values) {
    int64_t before = live_blocks();
    nsci_json_doc *doc = parse("{\"a\": [1, 2.5, {\"b\": null}],\n \"c\": true, \"d\": false, "
                               "\"e\": \"x\", \"f\": {}, \"g\": []}");
    cr_assert_not_null(doc, "%s", nsc_last_error());
    const nsci_json *root = nsci_json_root(doc);
    cr_assert_eq(root->type, NSCI_JSON_OBJECT);
    cr_assert_eq(root->n_items, 6);
    cr_expect_str_eq(root->keys[0], "a");
    const nsci_json *a = nsci_json_get(root, "a");
    cr_assert_eq(a->type, NSCI_JSON_ARRAY);
    cr_assert_eq(a->n_items, 3);
    cr_expect_null(a->keys);
    cr_expect(a->items[0]->is_int && a->items[0]->integer == 1);
    cr_expect(!a->items[1]->is_int && a->items[1]->number == 2.5);
    cr_expect_eq(nsci_json_get(a->items[2], "b")->type, NSCI_JSON_NULL);
    cr_expect(nsci_json_get(root, "c")->boolean);
    cr_expect_eq(nsci_json_get(root, "d")->type, NSCI_JSON_BOOL);
    cr_expect(!nsci_json_get(root, "d")->boolean);
    cr_expect_str_eq(nsci_json_get(root, "e")->string, "x");
    cr_expect_eq(nsci_json_get(root, "f")->n_items, 0);
    cr_expect_eq(nsci_json_get(root, "g")->n_items, 0);
    // Positions are 1-based lines and byte columns of where each value starts.
    cr_expect_eq(nsci_json_get(root, "c")->line, 2);
    cr_expect_eq(nsci_json_get(root, "c")->column, 7);
    cr_expect_null(nsci_json_get(root, "missing"));
    cr_expect_null(nsci_json_get(a, "a"), "get on an array finds nothing");
    cr_expect_null(nsci_json_get(NULL, "a"));
    nsci_json_doc_free(doc);
    cr_expect_eq(live_blocks(), before);
}

Test(json, scalars_at_the_root_and_whitespace) {
    const char *texts[] = { "  null ", "\ttrue\r\n", "\"s\"", "-0", "[]", "{}" };
    for (int i = 0; i < NSCI_ARRAY_LEN(texts); i++) {
        nsci_json_doc *doc = parse(texts[i]);
        cr_expect_not_null(doc, "<%s>: %s", texts[i], nsc_last_error());
        nsci_json_doc_free(doc);
    }
    cr_expect_null(nsci_json_root(NULL));
    nsci_json_doc_free(NULL);
}

Test(json, escapes) {
    nsci_json_doc *doc = parse("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", "
                               "\"\\ud83d\\ude00\", \"a\\u0000b\", \"\xc3\xa9 raw\"]");
    cr_assert_not_null(doc, "%s", nsc_last_error());
    const nsci_json *r = nsci_json_root(doc);
    cr_expect_str_eq(r->items[0]->string, "\"\\/\b\f\n\r\t");
    cr_expect_eq(r->items[0]->string_len, 8);
    cr_expect_str_eq(r->items[1]->string, "\xc3\xa9\xe2\x82\xac");
    cr_expect_str_eq(r->items[2]->string, "\xf0\x9f\x98\x80", "a surrogate pair is one U+1F600");
    cr_expect_eq(r->items[3]->string_len, 3, "an escaped NUL is kept, with the length");
    cr_expect_eq(memcmp(r->items[3]->string, "a\0b", 4), 0);
    cr_expect_str_eq(r->items[4]->string, "\xc3\xa9 raw");
    nsci_json_doc_free(doc);
}

Test(json, escape_errors) {
    expect_error("\"\\ud83d\"", "unpaired surrogate");
    expect_error("\"\\ude00\"", "unpaired surrogate");
    expect_error("\"\\ud83d\\u0041\"", "unpaired surrogate");
    expect_error("\"\\ud83dx\"", "unpaired surrogate");
    expect_error("\"\\x\"", "bad escape '\\x'");
    expect_error("\"\\u12G4\"", "bad \\u escape");
    expect_error("\"\\u12\"", "bad \\u escape");
    expect_error("\"a\tb\"", "control character 0x09 in string");
    expect_error("\"a\nb\"", "control character 0x0a in string");
}

// Strings are UTF-8, as Python's json.loads of bytes and serde require: each
// fault is refused at its lead byte, every valid form is kept byte for byte.
Test(json, strings_must_be_valid_utf8) {
    expect_error("[\"ok\", \"a\x80\"]",
                 "test.json: line 1, column 10: invalid UTF-8 in a string: a continuation byte "
                 "with no lead byte (lead byte 0x80) (byte 9)");
    expect_error("\"\xc0\xaf\"", "an overlong form (lead byte 0xc0)");
    expect_error("\"\xe0\x80\xaf\"", "an overlong form (lead byte 0xe0)");
    expect_error("\"\xf0\x80\x80\xaf\"", "an overlong form (lead byte 0xf0)");
    expect_error("\"\xed\xa0\x80\"", "a UTF-16 surrogate (lead byte 0xed)");
    expect_error("\"\xf4\x90\x80\x80\"", "a code point above U+10FFFF (lead byte 0xf4)");
    expect_error("\"\xf5\x80\x80\x80\"", "a code point above U+10FFFF (lead byte 0xf5)");
    expect_error("\"\xff\"", "a byte UTF-8 never uses (lead byte 0xff)");
    expect_error("\"\xe2\x82\"", "a sequence cut short (lead byte 0xe2)");
    expect_error("{\"ok\": 1, \"\xc3\": 2}", "line 1, column 12: invalid UTF-8");
    const char valid[] = "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"
                         "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf";
    char text[64];
    snprintf(text, sizeof text, "\"%s\"", valid);
    nsci_json_doc *doc = parse(text);
    cr_assert_not_null(doc, "%s", nsc_last_error());
    cr_expect_str_eq(nsci_json_root(doc)->string, valid);
    nsci_json_doc_free(doc);
}

Test(json, unterminated) {
    expect_error("\"abc", "line 1, column 1: unterminated string");
    expect_error("\"abc\\\"", "unterminated string");
    expect_error("\"abc\\", "unterminated string");
    expect_error("[1, 2", "expected ',' or ']'");
    expect_error("{\"a\": 1", "expected ',' or '}'");
    expect_error("[", "unexpected end of input");
    expect_error("", "line 1, column 1: unexpected end of input");
    expect_error("   \n  ", "line 2, column 3: unexpected end of input");
}

Test(json, numbers) {
    nsci_json_doc *doc = parse("[0, -0, 123, -9223372036854775808, 9223372036854775807, "
                               "9223372036854775808, 1.5, 1e3, -1.25e-2, 2E+2, 1e400]");
    cr_assert_not_null(doc, "%s", nsc_last_error());
    const nsci_json *r = nsci_json_root(doc);
    cr_expect(r->items[0]->is_int && r->items[0]->integer == 0);
    cr_expect(r->items[1]->is_int && r->items[1]->integer == 0 && signbit(r->items[1]->number));
    cr_expect(r->items[2]->is_int && r->items[2]->integer == 123);
    cr_expect(r->items[3]->is_int && r->items[3]->integer == INT64_MIN);
    cr_expect(r->items[4]->is_int && r->items[4]->integer == INT64_MAX);
    cr_expect(!r->items[5]->is_int, "2^63 does not fit int64");
    cr_expect_eq(r->items[5]->number, 9223372036854775808.0);
    cr_expect(!r->items[6]->is_int && r->items[6]->number == 1.5);
    cr_expect(!r->items[7]->is_int && r->items[7]->number == 1000.0, "an exponent makes a float");
    cr_expect_eq(r->items[8]->number, -1.25e-2);
    cr_expect_eq(r->items[9]->number, 200.0);
    cr_expect(isinf(r->items[10]->number));
    nsci_json_doc_free(doc);
}

Test(json, number_errors) {
    expect_error("-", "expected a value");
    expect_error("+1", "expected a value");
    expect_error(".5", "expected a value");
    expect_error("1.", "expected digits after '.'");
    expect_error("1.e5", "expected digits after '.'");
    expect_error("1e", "expected digits in exponent");
    expect_error("1e+", "expected digits in exponent");
    expect_error("01", "unexpected text after the value");
    expect_error("0x10", "unexpected text after the value");
    char long_number[500];
    memset(long_number, '1', sizeof long_number - 1);
    long_number[sizeof long_number - 1] = '\0';
    expect_error(long_number, "is too long");
}

Test(json, python_non_finite_extension) {
    nsci_json_doc *doc = parse("[NaN, Infinity, -Infinity]");
    cr_assert_not_null(doc, "%s", nsc_last_error());
    const nsci_json *r = nsci_json_root(doc);
    cr_expect(isnan(r->items[0]->number) && !r->items[0]->is_int);
    cr_expect(isinf(r->items[1]->number) && r->items[1]->number > 0);
    cr_expect(isinf(r->items[2]->number) && r->items[2]->number < 0);
    nsci_json_doc_free(doc);
    expect_error("nan", "expected a value");
    expect_error("-NaN", "expected a value");
    expect_error("Inf", "expected a value");
}

Test(json, syntax_errors_with_positions) {
    expect_error("{\n  \"a\": ,\n}", "test.json: line 2, column 8: expected a value");
    expect_error("{\"a\" 1}", "line 1, column 6: expected ':' after key \"a\"");
    expect_error("{1: 2}", "line 1, column 2: expected a string key");
    expect_error("[1,]", "line 1, column 4: expected a value");
    expect_error("{\"a\":1,}", "line 1, column 8: expected a string key");
    expect_error("[1 2]", "expected ',' or ']'");
    expect_error("{} x", "line 1, column 4: unexpected text after the value");
    expect_error("[1]]", "unexpected text after the value");
    expect_error("tru", "expected a value");
    expect_error("nul", "expected a value");
    expect_error("'a'", "expected a value");
}

Test(json, trailing_literal_garbage) {
    expect_error("truex", "unexpected text after the value");
    expect_error("[nullx]", "expected ',' or ']'");
}

// A string of depth '[' then the matching ']'.
static char *nested(int depth) {
    char *s = malloc((size_t)depth * 2 + 1);
    memset(s, '[', (size_t)depth);
    memset(s + depth, ']', (size_t)depth);
    s[depth * 2] = '\0';
    return s;
}

Test(json, depth_limit) {
    char *ok = nested(64), *deep = nested(65);
    nsci_json_doc *doc = parse(ok);
    cr_expect_not_null(doc, "64 levels are allowed by default: %s", nsc_last_error());
    nsci_json_doc_free(doc);
    expect_error(deep, "nesting deeper than 64");
    nsci_json_limits limits = { 0, 2, NULL };
    doc = nsci_json_parse("[[1]]", 5, &limits, "x");
    cr_expect_not_null(doc);
    nsci_json_doc_free(doc);
    cr_expect_null(nsci_json_parse("[[[1]]]", 7, &limits, "x"));
    cr_expect(strstr(nsc_last_error(), "x: line 1, column 3: nesting deeper than 2"), "%s",
              nsc_last_error());
    cr_expect_null(nsci_json_parse("{\"a\":{\"b\":{}}}", 14, &limits, "x"));
    free(ok);
    free(deep);
}

Test(json, size_limit) {
    nsci_json_limits limits = { 10, 0, NULL };
    int64_t before = live_blocks();
    cr_expect_null(nsci_json_parse("[1,2,3,4,5,6]", 13, &limits, "vocab.json"));
    cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT);
    cr_expect_str_eq(nsc_last_error(), "vocab.json: 13 bytes is over the limit of 10 bytes");
    nsci_json_doc *doc = nsci_json_parse("[1,2,3,4]", 9, &limits, "vocab.json");
    cr_expect_not_null(doc);
    nsci_json_doc_free(doc);
    cr_expect_eq(live_blocks(), before);
}

Test(json, length_is_respected_not_nul) {
    // Only len bytes are read: the text need not be NUL-terminated.
    nsci_json_doc *doc = nsci_json_parse("[1]garbage", 3, NULL, "x");
    cr_expect_not_null(doc, "%s", nsc_last_error());
    nsci_json_doc_free(doc);
    const char cut[] = { '"', 'a', 'b' };
    cr_expect_null(nsci_json_parse(cut, sizeof cut, NULL, "x"));
    cr_expect(strstr(nsc_last_error(), "unterminated string"));
}

Test(json, keys_with_nul_are_refused) {
    // Keys are C strings: a NUL inside one would silently cut it short.
    expect_error("{\"ok\": 1, \"a\\u0000b\": 2}", "line 1, column 11: object key contains \\u0000");
    nsci_json_doc *doc = parse("{\"a\": \"value\\u0000ok\"}");
    cr_expect_not_null(doc, "NUL stays allowed in string values");
    nsci_json_doc_free(doc);
}

Test(json, duplicate_keys_are_kept) {
    // The reader keeps both members (get finds the first); callers that care check.
    nsci_json_doc *doc = parse("{\"a\": 1, \"a\": 2}");
    cr_assert_not_null(doc);
    cr_expect_eq(nsci_json_root(doc)->n_items, 2);
    cr_expect_eq(nsci_json_get(nsci_json_root(doc), "a")->integer, 1);
    nsci_json_doc_free(doc);
}

Test(json, large_arrays_and_strings) {
    nsci_buf b;
    nsci_buf_init(&b);
    nsci_buf_puts(&b, "{\"k\": [");
    for (int i = 0; i < 20000; i++) {
        nsci_buf_printf(&b, i ? ",%d" : "%d", i);
    }
    nsci_buf_puts(&b, "], \"s\": \"");
    for (int i = 0; i < 40000; i++) {
        nsci_buf_puts(&b, "ab");
    }
    nsci_buf_puts(&b, "\"}");
    cr_assert(!b.failed);
    nsci_json_doc *doc = nsci_json_parse(b.data, b.len, NULL, "big");
    cr_assert_not_null(doc, "%s", nsc_last_error());
    const nsci_json *k = nsci_json_get(nsci_json_root(doc), "k");
    cr_expect_eq(k->n_items, 20000);
    cr_expect_eq(k->items[19999]->integer, 19999);
    cr_expect_eq(nsci_json_get(nsci_json_root(doc), "s")->string_len, 80000);
    nsci_json_doc_free(doc);
    nsci_buf_free(&b);
}

// A stale out-of-memory record from an earlier call must not hide a syntax error.
Test(json, syntax_error_after_an_earlier_oom) {
    nsc_mem_fail_after(1);
    cr_expect_null(nsci_malloc(16));
    nsc_mem_fail_after(0);
    cr_expect_eq(nsc_last_status(), NSC_ERR_OOM);
    cr_expect_null(parse("[1,"));
    cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT, "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), "line 1, column 4: unexpected end of input"), "%s",
              nsc_last_error());
}

// Every allocation of a parse fails in turn: NULL with NSC_ERR_OOM, no leak.
Test(json, out_of_memory_sweep) {
    const char *text = "{\"a\": [1, 2, {\"b\": \"\\u00e9\"}], \"c\": [[], {}, \"xyz\"]}";
    int64_t before = live_blocks();
    bool succeeded = false;
    for (int k = 1; k < 200 && !succeeded; k++) {
        nsc_clear_error();
        nsc_mem_fail_after(k);
        nsci_json_doc *doc = parse(text);
        nsc_mem_fail_after(0);
        if (doc) {
            succeeded = true;
            nsci_json_doc_free(doc);
        } else {
            cr_expect_eq(nsc_last_status(), NSC_ERR_OOM, "k=%d: %s", k, nsc_last_error());
            cr_expect(strstr(nsc_last_error(), "out of memory"), "k=%d: %s", k, nsc_last_error());
        }
        cr_expect_eq(live_blocks(), before, "k=%d leaked", k);
    }
    cr_expect(succeeded);
}

// --- util/buf.c ---

Test(buf, json_string_round_trips_every_byte) {
    char text[256];
    for (int i = 1; i < 256; i++) {
        text[i - 1] = (char)i;
    }
    text[255] = '\0';
    nsci_buf b;
    nsci_buf_init(&b);
    nsci_buf_json_string(&b, text, 127); // ASCII 0x01..0x7f
    nsci_json_doc *doc = nsci_json_parse(b.data, b.len, NULL, "buf");
    cr_assert_not_null(doc, "%s", nsc_last_error());
    cr_expect_eq(nsci_json_root(doc)->string_len, 127);
    cr_expect_eq(memcmp(nsci_json_root(doc)->string, text, 127), 0);
    nsci_json_doc_free(doc);
    nsci_buf_free(&b);
    cr_expect_null(b.data);
}

Test(buf, printf_append_and_doubles) {
    nsci_buf b;
    nsci_buf_init(&b);
    nsci_buf_printf(&b, "%s=%d", "x", 42);
    nsci_buf_append(&b, ";", 1);
    for (int i = 0; i < 1000; i++) {
        nsci_buf_puts(&b, "0123456789");
    }
    cr_expect_eq(b.len, 5 + 10000);
    cr_expect_eq(strncmp(b.data, "x=42;0123", 9), 0);
    cr_expect_eq(b.data[b.len], '\0');
    b.len = 0;
    const double values[] = { 0.1, 1.0, -2.5e-300, 1e300, 3.0, NAN, INFINITY, -INFINITY };
    for (int i = 0; i < NSCI_ARRAY_LEN(values); i++) {
        nsci_buf_puts(&b, i ? "," : "[");
        nsci_buf_double(&b, values[i]);
    }
    nsci_buf_puts(&b, "]");
    cr_expect(strstr(b.data, "[0.1,1.0,-2.5e-300,1e+300,3.0,NaN,Infinity,-Infinity]"), "%s",
              b.data);
    nsci_json_doc *doc = nsci_json_parse(b.data, b.len, NULL, "doubles");
    cr_assert_not_null(doc, "%s", nsc_last_error());
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(nsci_json_root(doc)->items[i]->number, values[i], "bit-exact read back");
    }
    nsci_json_doc_free(doc);
    nsci_buf_free(&b);
}

Test(buf, allocation_failure_is_sticky) {
    int64_t before = live_blocks();
    nsci_buf b;
    nsci_buf_init(&b);
    nsc_mem_fail_after(1);
    nsci_buf_puts(&b, "abc");
    nsc_mem_fail_after(0);
    cr_expect(b.failed);
    nsci_buf_puts(&b, "def");
    cr_expect_eq(b.len, 0, "writes after a failure are dropped");
    nsci_buf_free(&b);
    cr_expect_eq(live_blocks(), before);
}

Test(buf, read_file_errors) {
    size_t len = 0;
    cr_expect_null(nsci_read_file("/nonexistent/nsc/file.json", 0, &len));
    cr_expect_eq(nsc_last_status(), NSC_ERR_IO);
    cr_expect(strstr(nsc_last_error(), "/nonexistent/nsc/file.json: cannot open"));
    char path[] = "/tmp/nsc_test_read_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, "[1,2,3]", 7), 7);
    close(fd);
    cr_expect_null(nsci_read_file(path, 4, &len));
    cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT);
    cr_expect(strstr(nsc_last_error(), "7 bytes is over the limit of 4 bytes"));
    char *text = nsci_read_file(path, 0, &len);
    cr_expect(text && len == 7 && strcmp(text, "[1,2,3]") == 0);
    nsci_free(text);
    unlink(path);
}

// The host program's locale must not change how numbers read or write.
Test(json, numbers_ignore_the_program_locale) {
    locale_t comma = nsct_comma_locale();
    if (!comma) {
        cr_skip_test("no de_DE.UTF-8 locale and no localedef to build one");
    }
    locale_t c_locale = uselocale(comma);
    nsci_json_doc *doc = parse("[1.5, 2e-1]");
    cr_assert_not_null(doc);
    cr_expect_eq(nsci_json_root(doc)->items[0]->number, 1.5);
    cr_expect_eq(nsci_json_root(doc)->items[1]->number, 0.2);
    nsci_json_doc_free(doc);
    nsci_buf b;
    nsci_buf_init(&b);
    nsci_buf_double(&b, 0.5);
    cr_expect_str_eq(b.data, "0.5");
    nsci_buf_free(&b);
    char text[NSCI_DOUBLE_TEXT_BYTES], *end;
    nsci_format_double(text, sizeof text, 0.0015);
    cr_expect_str_eq(text, "0.0015");
    cr_expect(nsci_strtod("2.5x", &end) == 2.5 && *end == 'x');
    uselocale(c_locale);
    freelocale(comma);
}
