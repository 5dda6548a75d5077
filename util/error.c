// The per-thread error record: a status and a message, set by the failing
// call and only extended (never overwritten) by the layers above it.
#include <string.h>

#include "util_impl.h"

enum { MESSAGE_BYTES = 1024 };

static _Thread_local nsc_status t_status;
static _Thread_local char t_message[MESSAGE_BYTES];

const char *nsc_last_error(void) {
    return t_message;
}

nsc_status nsc_last_status(void) {
    return t_status;
}

void nsc_clear_error(void) {
    t_status = NSC_OK;
    t_message[0] = '\0';
}

const char *nsc_status_name(nsc_status status) {
    static const char *const names[] = {
        [NSC_OK] = "NSC_OK",
        [NSC_ERR_ARG] = "NSC_ERR_ARG",
        [NSC_ERR_SHAPE] = "NSC_ERR_SHAPE",
        [NSC_ERR_DTYPE] = "NSC_ERR_DTYPE",
        [NSC_ERR_DEVICE] = "NSC_ERR_DEVICE",
        [NSC_ERR_OOM] = "NSC_ERR_OOM",
        [NSC_ERR_IO] = "NSC_ERR_IO",
        [NSC_ERR_FORMAT] = "NSC_ERR_FORMAT",
        [NSC_ERR_STATE] = "NSC_ERR_STATE",
        [NSC_ERR_UNSUPPORTED] = "NSC_ERR_UNSUPPORTED",
        [NSC_STOPPED] = "NSC_STOPPED",
    };
    if ((unsigned)status < sizeof names / sizeof names[0]) {
        return names[status];
    }
    return "NSC_ERR_UNKNOWN";
}

nsc_status nsci_failv(nsc_status status, const char *fmt, va_list ap) {
    t_status = status;
    vsnprintf(t_message, MESSAGE_BYTES, fmt, ap);
    return status;
}

nsc_status nsci_fail(nsc_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nsci_failv(status, fmt, ap);
    va_end(ap);
    return status;
}

void *nsci_fail_null(nsc_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nsci_failv(status, fmt, ap);
    va_end(ap);
    return NULL;
}

nsc_status nsci_fail_keep(nsc_status status, const char *fmt, ...) {
    if (t_status != NSC_OK) {
        return t_status;
    }
    va_list ap;
    va_start(ap, fmt);
    nsci_failv(status, fmt, ap);
    va_end(ap);
    return status;
}

void *nsci_fail_keep_null(nsc_status status, const char *fmt, ...) {
    if (t_status != NSC_OK) {
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    nsci_failv(status, fmt, ap);
    va_end(ap);
    return NULL;
}

// Appends s to the message, truncating at the buffer's end.
static void append(const char *s) {
    size_t len = strlen(t_message);
    size_t room = MESSAGE_BYTES - 1 - len;
    size_t n = strlen(s);
    n = n < room ? n : room;
    memcpy(t_message + len, s, n);
    t_message[len + n] = '\0';
}

// True when the message ends in a parenthesis opened by '(' (an earlier
// context, which the next joins); a half-open range "[0, 10)" is not one.
static bool ends_in_context(const char *m, size_t len) {
    if (len == 0 || m[len - 1] != ')') {
        return false;
    }
    int depth = 0;
    for (size_t i = len; i-- > 0;) {
        depth += m[i] == ')' || m[i] == ']';
        depth -= m[i] == '(' || m[i] == '[';
        if (depth == 0) {
            return m[i] == '(';
        }
    }
    return false;
}

void nsci_error_context(const char *fmt, ...) {
    char context[MESSAGE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    size_t len = strlen(t_message);
    if (ends_in_context(t_message, len)) {
        t_message[len - 1] = '\0';
        append(", ");
    } else {
        append(" (");
    }
    append(context);
    append(")");
}

void nsci_error_prefix(const char *fmt, ...) {
    char old[MESSAGE_BYTES];
    memcpy(old, t_message, MESSAGE_BYTES);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_message, MESSAGE_BYTES, fmt, ap);
    va_end(ap);
    append(": ");
    append(old);
}

void nsci_error_save(nsci_error_saved *saved) {
    saved->status = t_status;
    memcpy(saved->message, t_message, sizeof saved->message);
}

void nsci_error_restore(const nsci_error_saved *saved) {
    t_status = saved->status;
    memcpy(t_message, saved->message, sizeof t_message);
}

char *nsci_shape_str(char *buf, size_t buf_bytes, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, buf_bytes, "[");
    for (int i = 0; i < ndim && used < buf_bytes; i++) {
        used += (size_t)snprintf(buf + used, buf_bytes - used, i ? ",%lld" : "%lld",
                                 (long long)shape[i]);
    }
    if (used < buf_bytes) {
        snprintf(buf + used, buf_bytes - used, "]");
    }
    return buf;
}

// --- source positions (set by the nsc/source.h macros, read by graph/) ---

static _Thread_local const char *t_source_file;
static _Thread_local int t_source_line;

void nsc_source_mark(const char *file, int line) {
    t_source_file = file;
    t_source_line = line;
}

const char *nsci_source_file(void) {
    return t_source_file;
}

int nsci_source_line(void) {
    return t_source_line;
}
