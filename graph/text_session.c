// Writing a session as text: its values, iterators and traces in the order
// they were made (session graph ids and trace numbers as they were), each
// trace written as a single trace is (graph/text_write.c).
#include "graph/text_impl.h"

static nsc_status write_session_trace(nsci_text_writer *w, const nsc_trace *tr, int32_t id,
                                      bool last) {
    if (nsci_text_check_unrun(tr) != NSC_OK) {
        return nsc_last_status();
    }
    char prefix[32];
    snprintf(prefix, sizeof prefix, "t%d.", tr->order);
    nsci_text_indent(w);
    nsci_buf_puts(w->b, "{\n");
    w->depth++;
    nsci_text_indent(w);
    nsci_buf_printf(w->b, "\"trace\": %d,\n", tr->order);
    nsci_text_indent(w);
    if (tr->iterator) {
        nsci_buf_printf(w->b, "\"iterator\": %d,\n", tr->iterator->item_node);
    } else {
        nsci_buf_printf(w->b, "\"id\": %d,\n", id);
    }
    nsc_status status = nsci_text_write_trace(w, tr, prefix);
    w->depth--;
    nsci_text_indent(w);
    nsci_buf_puts(w->b, last ? "}\n" : "},\n");
    return status;
}

static const nsc_iterator *iterator_of(const nsc_session *s, int32_t item_node) {
    for (int k = 0; k < s->n_steps; k++) {
        if (s->steps[k].iterator && s->steps[k].iterator->item_node == item_node) {
            return s->steps[k].iterator;
        }
    }
    return NULL;
}

// A value or an iterator: one line.
static nsc_status write_session_entry(nsci_text_writer *w, int32_t id, bool last) {
    const nsci_gnode *n = &w->session->values->nodes[id];
    const nsc_iterator *it = iterator_of(w->session, id);
    char key[64];
    if (n->protocol != NSCI_PROTO_value || (!it && !n->value[0])) {
        return nsci_fail(NSC_ERR_UNSUPPORTED,
                         "graph text: session node %d (%s) cannot be "
                         "written: only values, iterators and traces",
                         id, nsci_protocols[n->protocol]->name);
    }
    nsci_text_indent(w);
    nsci_buf_printf(w->b, "{\"id\": %d, \"%s\": ", id, it ? "iterate" : "value");
    nsc_status status = NSC_OK;
    if (!it) {
        snprintf(key, sizeof key, "session.%d", id);
        status = nsci_text_write_tensor(w, n->value[0], key, false);
    }
    for (int k = 0; it && k < it->n_items && status == NSC_OK; k++) {
        snprintf(key, sizeof key, "session.%d.item%d", id, k);
        nsci_buf_puts(w->b, k ? ", " : "[");
        status = nsci_text_write_tensor(w, it->items[k], key, false);
    }
    nsci_buf_puts(w->b, it ? "]" : "");
    nsci_buf_puts(w->b, last ? "}\n" : "},\n");
    return status;
}

static nsc_status write_session_body(nsci_text_writer *w, const nsc_session *s) {
    const nsc_trace *values = s->values;
    int next = 0, total = values->n_nodes, written = 0;
    for (int t = 0; t < s->n_traces; t++) {
        total += s->traces[t]->iterator != NULL;
    }
    nsc_status status = NSC_OK;
    for (int32_t id = 0; id <= values->n_nodes && status == NSC_OK; id++) {
        const nsc_trace *step = NULL;
        if (id < values->n_nodes &&
            values->nodes[id].protocol == NSCI_PROTO_local_backend_execute) {
            step = values->nodes[id].payload;
        }
        // Iterator traces made before this step's trace (or after everything).
        while (status == NSC_OK && next < s->n_traces && s->traces[next]->iterator &&
               (id == values->n_nodes || (step && s->traces[next]->order < step->order))) {
            status = write_session_trace(w, s->traces[next++], -1, ++written == total);
        }
        if (id == values->n_nodes || status != NSC_OK) {
            break;
        }
        if (step) {
            status = write_session_trace(w, s->traces[next++], id, ++written == total);
        } else {
            status = write_session_entry(w, id, ++written == total);
        }
    }
    return status;
}

char *nsci_text_write_session(nsci_text_writer *w, const nsc_session *s) {
    w->session = s;
    nsci_buf_puts(w->b, "{\n  \"format\": \"nsc-graph\",\n  \"version\": 1,\n  \"session\": [\n");
    w->depth = 2;
    nsc_status status = write_session_body(w, s);
    nsci_buf_puts(w->b, "  ]\n}\n");
    return nsci_text_finish(w->b, status);
}

char *nsc_session_to_text(const nsc_session *s, const nsc_graph_text_options *options) {
    if (!s) {
        return nsci_fail_keep_null(NSC_ERR_ARG, "session_to_text: session is NULL");
    }
    if (s->values->first_status != NSC_OK) { // a building call failed (graph/session.c)
        return nsci_fail_null(s->values->first_status,
                              "session_to_text: the session has errors: %s",
                              s->values->first_error);
    }
    return nsci_text_write_hinted(s, NULL, options, NULL, NULL);
}
