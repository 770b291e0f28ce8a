/* wazuh_anomaly.netflow.flowfast: the batch loop of stream.FlowPipeline.collect in C.
 *
 * Engine(pipeline).collect(pipeline, batch, out) does what FlowPipeline.python_collect does: each
 * (where, line) of the batch parsed (orjson.loads), normalised, observed by the detector
 * and serialised, the output appended to `out`, the counts added to pipeline.stats. A line
 * the compiled path does not handle for certain (not JSON, not a dict, a shape or value
 * the fast normaliser declines) goes to the pipeline's Python path, one line at a time, so
 * the output and every skip reason are the Python code's. `out` receives bytes objects
 * that hold one or more output lines joined by "\n" (never a trailing newline).
 * The engine keeps no reference to the pipeline (which holds the engine): no cycle.
 */
#include "flowfast.h"
#include <string.h>

static const char *const TAG_NAMES[FF_TAG_COUNT] = {
    "possible_port_scan", "high_outbound_bytes", "possible_beaconing", "possible_lateral_movement",
    "suspicious_dns_flow", "external_inbound_sensitive_service", "unusual_outbound_port", "possible_dos",
    "possible_brute_force",
};

typedef struct {
    PyObject_HEAD
    PyObject *loads;            /* orjson.loads */
    PyObject *decode_error;     /* orjson.JSONDecodeError */
    PyObject *python_line;      /* pipeline.python_collect, during collect(): the Python path for one line */
    PyObject *too_long;         /* pipeline.too_long(where), during collect(): the skip of an over-long event */
    PyObject *unexpected;       /* pipeline.unexpected(where, exc), during collect(): the skip of a record
                                 * whose observation raised one of stream.UNEXPECTED */
    PyObject *unexpected_kinds; /* stream.UNEXPECTED */
    int ready;
    FFNormalizer *normalizer;
    FFDetector *detector;       /* NULL: detections off */
    Py_ssize_t max_event_bytes;
    FFBuf buf;                  /* the output being gathered; its memory is kept from call to call */
    PyObject *tag_names[FF_TAG_COUNT];
} Engine;

static void Engine_dealloc(Engine *self)
{
    Py_XDECREF(self->loads);
    Py_XDECREF(self->decode_error);
    Py_XDECREF(self->unexpected_kinds);
    for (int i = 0; i < FF_TAG_COUNT; i++)
        Py_XDECREF(self->tag_names[i]);
    if (self->normalizer)
        ffn_free(self->normalizer);
    if (self->detector)
        ffd_free(self->detector);
    PyMem_Free(self->buf.data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Engine_init(Engine *self, PyObject *args, PyObject *kwds)
{
    PyObject *pipeline;
    Py_ssize_t max_event_bytes;
    static char *kwlist[] = {"pipeline", "max_event_bytes", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On", kwlist, &pipeline, &max_event_bytes))
        return -1;
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Engine is initialised once");
        return -1;
    }
    self->ready = 1;
    self->max_event_bytes = max_event_bytes;
    PyObject *orjson = PyImport_ImportModule("orjson");
    if (orjson == NULL)
        return -1;
    self->loads = PyObject_GetAttrString(orjson, "loads");
    self->decode_error = PyObject_GetAttrString(orjson, "JSONDecodeError");
    Py_DECREF(orjson);
    if (self->loads == NULL || self->decode_error == NULL)
        return -1;
    PyObject *stream = PyImport_ImportModule("wazuh_anomaly.netflow.stream");
    if (stream == NULL)
        return -1;
    self->unexpected_kinds = PyObject_GetAttrString(stream, "UNEXPECTED");
    Py_DECREF(stream);
    if (self->unexpected_kinds == NULL)
        return -1;
    for (int i = 0; i < FF_TAG_COUNT; i++) {
        self->tag_names[i] = PyUnicode_InternFromString(TAG_NAMES[i]);
        if (self->tag_names[i] == NULL)
            return -1;
    }
    PyObject *normalizer = PyObject_GetAttrString(pipeline, "normalizer");
    if (normalizer == NULL)
        return -1;
    self->normalizer = ffn_new(normalizer);
    Py_DECREF(normalizer);
    if (self->normalizer == NULL)
        return -1;
    PyObject *detector = PyObject_GetAttrString(pipeline, "detector");
    if (detector == NULL)
        return -1;
    if (detector != Py_None) {
        self->detector = ffd_new(detector);
        if (self->detector == NULL) {
            Py_DECREF(detector);
            return -1;
        }
    }
    Py_DECREF(detector);
    return 0;
}

/* Hands the lines gathered so far to `out` as one bytes object. */
static int flush(FFBuf *buf, PyObject *out)
{
    if (buf->len == 0)
        return 0;
    /* every line in the buffer ends with its "\n" separator; the last one is dropped */
    PyObject *data = PyBytes_FromStringAndSize(buf->data, buf->len - 1);
    if (data == NULL)
        return -1;
    int rc = PyList_Append(out, data);
    Py_DECREF(data);
    buf->len = 0;
    return rc;
}

/* The place of line i: `where(i)` when the batch is bare lines, else the pair's first item. */
static PyObject *place(PyObject *where, Py_ssize_t i, PyObject *item)
{
    if (where == NULL)
        return Py_NewRef(PyTuple_GET_ITEM(item, 0));
    PyObject *index = PyLong_FromSsize_t(i);
    if (index == NULL)
        return NULL;
    PyObject *text = PyObject_CallOneArg(where, index);
    Py_DECREF(index);
    return text;
}

/* The Python path for one line (after what was gathered so far, to keep the order). */
static int python_line(Engine *self, PyObject *where, Py_ssize_t i, PyObject *item, FFBuf *buf, PyObject *out)
{
    if (flush(buf, out) < 0)
        return -1;
    PyObject *one = PyList_New(1);
    if (one == NULL)
        return -1;
    if (where != NULL) {            /* a bare line: the pair Python's path takes */
        PyObject *text = place(where, i, item);
        PyObject *pair = text ? PyTuple_Pack(2, text, item) : NULL;
        Py_XDECREF(text);
        if (pair == NULL) {
            Py_DECREF(one);
            return -1;
        }
        item = pair;
    } else {
        Py_INCREF(item);
    }
    PyList_SET_ITEM(one, 0, item);
    PyObject *r = PyObject_CallFunctionObjArgs(self->python_line, one, out, NULL);
    Py_DECREF(one);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* pipeline.unexpected(where, exc) for the exception being raised, which it clears. */
static int skip_unexpected(Engine *self, PyObject *where, Py_ssize_t i, PyObject *item)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    PyObject *text = place(where, i, item);
    PyObject *r = text && value ? PyObject_CallFunctionObjArgs(self->unexpected, text, value, NULL) : NULL;
    Py_XDECREF(text);
    Py_XDECREF(value);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int blank(const char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c'))
            return 0;
    }
    return 1;
}

/* The rest of the event after the normaliser's part: anomaly, srcip, dstip. */
static int write_tail(Engine *self, FFBuf *buf, const FFRec *rec, const FFTags *tags)
{
    if (ffbuf_put(buf, "\"anomaly\":{\"tags\":[", 19) < 0)
        return -1;
    int first = 1;
    for (int i = 0; i < FF_TAG_COUNT; i++) {
        if (!(tags->tags & (1u << i)))
            continue;
        if (!first && ffbuf_put(buf, ",", 1) < 0)
            return -1;
        first = 0;
        if (ffbuf_put(buf, "\"", 1) < 0 || ffbuf_puts(buf, TAG_NAMES[i]) < 0 || ffbuf_put(buf, "\"", 1) < 0)
            return -1;
    }
    if (ffbuf_put(buf, "]", 1) < 0)
        return -1;
    if (tags->repeat >= 0) {
        if (ffbuf_puts(buf, ",\"port_scan\":{\"repeat\":") < 0 || ffbuf_json_int(buf, tags->repeat) < 0 ||
            ffbuf_put(buf, "}", 1) < 0)
            return -1;
    }
    if (tags->escalated && ffbuf_puts(buf, ",\"escalated\":\"true\"") < 0)
        return -1;
    if (ffbuf_put(buf, "}", 1) < 0)
        return -1;
    if (!rec->src_internal) {
        if (ffbuf_puts(buf, ",\"srcip\":") < 0 || ffbuf_json_str(buf, rec->src) < 0)
            return -1;
    }
    if (ffbuf_puts(buf, ",\"dstip\":") < 0 || ffbuf_json_str(buf, rec->dst) < 0 || ffbuf_put(buf, "}", 1) < 0)
        return -1;
    return 0;
}

/* Adds this call's counts to pipeline.stats (records, tagged, tags). */
static int add_counts(Engine *self, PyObject *pipeline, Py_ssize_t records, Py_ssize_t tagged,
                      const Py_ssize_t *per_tag)
{
    PyObject *stats = PyObject_GetAttrString(pipeline, "stats");
    if (stats == NULL)
        return -1;
    int rc = -1;
    PyObject *tags = NULL;
    const char *names[2] = {"records", "tagged"};
    Py_ssize_t adds[2] = {records, tagged};
    for (int i = 0; i < 2; i++) {
        if (!adds[i])
            continue;
        PyObject *now = PyObject_GetAttrString(stats, names[i]);
        if (now == NULL)
            goto done;
        PyObject *add = PyLong_FromSsize_t(adds[i]);
        PyObject *sum = add ? PyNumber_Add(now, add) : NULL;
        Py_DECREF(now);
        Py_XDECREF(add);
        if (sum == NULL)
            goto done;
        int set = PyObject_SetAttrString(stats, names[i], sum);
        Py_DECREF(sum);
        if (set < 0)
            goto done;
    }
    tags = PyObject_GetAttrString(stats, "tags");
    if (tags == NULL)
        goto done;
    for (int i = 0; i < FF_TAG_COUNT; i++) {
        if (!per_tag[i])
            continue;
        PyObject *now = PyDict_GetItemWithError(tags, self->tag_names[i]);
        if (now == NULL && PyErr_Occurred())
            goto done;
        PyObject *add = PyLong_FromSsize_t(per_tag[i]);
        if (add == NULL)
            goto done;
        PyObject *sum = now ? PyNumber_Add(now, add) : (Py_INCREF(add), add);
        Py_DECREF(add);
        if (sum == NULL)
            goto done;
        int set = PyDict_SetItem(tags, self->tag_names[i], sum);
        Py_DECREF(sum);
        if (set < 0)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(tags);
    Py_DECREF(stats);
    return rc;
}

static PyObject *Engine_collect(Engine *self, PyObject *args)
{
    PyObject *pipeline, *batch, *out, *where = Py_None;
    if (!PyArg_ParseTuple(args, "OOO!|O", &pipeline, &batch, &PyList_Type, &out, &where))
        return NULL;
    if (where == Py_None)
        where = NULL;
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Engine was not initialised");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(batch, "the batch must be a sequence of (where, line)");
    if (seq == NULL)
        return NULL;
    self->python_line = PyObject_GetAttrString(pipeline, "python_collect");
    self->too_long = self->python_line ? PyObject_GetAttrString(pipeline, "too_long") : NULL;
    self->unexpected = self->too_long ? PyObject_GetAttrString(pipeline, "unexpected") : NULL;
    if (self->unexpected == NULL) {
        Py_CLEAR(self->python_line);
        Py_CLEAR(self->too_long);
        Py_DECREF(seq);
        return NULL;
    }
    FFBuf buf = self->buf;      /* a local copy (the loop is hot); given back below */
    buf.len = 0;
    Py_ssize_t records = 0, tagged = 0, per_tag[FF_TAG_COUNT] = {0};
    /* The loop makes no reference cycles, only short-lived records that reference counting
     * frees; the collector would walk the detection windows (millions of objects) every
     * few hundred records for nothing. It runs again once the batch is done. */
    int collecting = PyGC_Disable();
    int failed = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        PyObject *item = items[i];
        PyObject *line = item;
        if (where != NULL ? !PyBytes_Check(item) :
                !PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyBytes_Check(line = PyTuple_GET_ITEM(item, 1))) {
            failed = python_line(self, where, i, item, &buf, out) < 0;      /* None: an over-long line */
            continue;
        }
        if (blank(PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line)))
            continue;
        PyObject *record = PyObject_CallOneArg(self->loads, line);
        if (record == NULL) {
            if (!PyErr_ExceptionMatches(self->decode_error)) {
                failed = 1;
                break;
            }
            PyErr_Clear();
            failed = python_line(self, where, i, item, &buf, out) < 0;
            continue;
        }
        FFRec rec;
        memset(&rec, 0, sizeof rec);
        Py_ssize_t start = buf.len;
        int rc = PyDict_CheckExact(record) ? ffn_normalize(self->normalizer, record, &rec, &buf) : 0;
        if (rc <= 0) {
            Py_DECREF(record);
            ff_rec_clear(&rec);
            buf.len = start;
            if (rc < 0)
                failed = 1;
            else
                failed = python_line(self, where, i, item, &buf, out) < 0;
            continue;
        }
        FFTags tags = {0, -1, 0};
        if (self->detector != NULL && ffd_observe(self->detector, &rec, &tags) < 0) {
            ff_rec_clear(&rec);
            Py_DECREF(record);
            buf.len = start;
            if (!PyErr_ExceptionMatches(self->unexpected_kinds)) {
                failed = 1;
                break;
            }
            /* as the Python path: this record skipped (the windows as far as it got), the rest go on */
            failed = skip_unexpected(self, where, i, item) < 0;
            continue;
        }
        if (write_tail(self, &buf, &rec, &tags) < 0)
            failed = 1;
        ff_rec_clear(&rec);
        Py_DECREF(record);
        if (failed)
            break;
        if (buf.len - start > self->max_event_bytes) {
            /* every field is bounded: only logcollector's limit guards this (as in Python) */
            buf.len = start;
            PyObject *text = place(where, i, item);
            PyObject *r = text ? PyObject_CallOneArg(self->too_long, text) : NULL;
            Py_XDECREF(text);
            if (r == NULL)
                failed = 1;
            Py_XDECREF(r);
            continue;
        }
        if (tags.tags) {
            tagged++;
            for (int t = 0; t < FF_TAG_COUNT; t++)
                if (tags.tags & (1u << t))
                    per_tag[t]++;
        }
        records++;
        /* lines of one bytes object are joined by "\n": the separator goes before the next */
        if (ffbuf_put(&buf, "\n", 1) < 0)
            failed = 1;
    }
    Py_DECREF(seq);
    Py_CLEAR(self->python_line);
    Py_CLEAR(self->too_long);
    Py_CLEAR(self->unexpected);
    if (!failed)
        failed = flush(&buf, out) < 0;
    if (collecting)
        PyGC_Enable();
    if (buf.cap > (Py_ssize_t)64 << 20) {      /* an unusually large batch: not kept */
        PyMem_Free(buf.data);
        buf.data = NULL;
        buf.cap = 0;
    }
    buf.len = 0;
    self->buf = buf;
    if (failed) {
        /* the counts of what was written still count */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        add_counts(self, pipeline, records, tagged, per_tag);
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (add_counts(self, pipeline, records, tagged, per_tag) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Engine_methods[] = {
    {"collect", (PyCFunction)Engine_collect, METH_VARARGS,
     "collect(pipeline, batch, out[, where]): the output of each good record of the batch appended to `out`;\n"
     "the batch is (where, line) pairs, or bare lines when `where(i)` names line i."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wazuh_anomaly.netflow.flowfast.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Engine(pipeline, max_event_bytes): FlowPipeline's batch loop, compiled.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
};

/* ---- test hooks: each half on its own, against the Python code ---- */

static PyObject *rec_to_tuple(const FFRec *r)
{
    static const char *const directions[4] = {"internal_to_internal", "internal_to_external",
                                              "external_to_internal", "external_to_external"};
    PyObject *sport = r->sport < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(r->sport);
    PyObject *dport = r->dport < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(r->dport);
    PyObject *duration = r->has_duration ? PyFloat_FromDouble(r->duration) : Py_NewRef(Py_None);
    PyObject *icmp = r->icmp_type < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(r->icmp_type);
    PyObject *t = NULL;
    if (sport && dport && duration && icmp)
        t = Py_BuildValue("(dlOOdOOOOOsKKOO)", r->ts, r->flags, r->src_local ? Py_True : Py_False,
                          r->dst_local ? Py_True : Py_False, r->res, r->src, r->dst, sport, dport, r->protocol,
                          directions[r->direction], r->packets, r->bytes, duration, icmp);
    Py_XDECREF(sport);
    Py_XDECREF(dport);
    Py_XDECREF(duration);
    Py_XDECREF(icmp);
    return t;
}

/* normalize_only(normalizer, record) -> None (declined) or (the event's JSON up to "anomaly",
 * the private tuple as normalize.PRIVATE holds it, src_internal). */
static PyObject *normalize_only(PyObject *module, PyObject *args)
{
    PyObject *normalizer, *record;
    if (!PyArg_ParseTuple(args, "OO", &normalizer, &record))
        return NULL;
    FFNormalizer *n = ffn_new(normalizer);
    if (n == NULL)
        return NULL;
    FFRec rec;
    memset(&rec, 0, sizeof rec);
    FFBuf buf = {NULL, 0, 0};
    int rc = PyDict_CheckExact(record) ? ffn_normalize(n, record, &rec, &buf) : 0;
    PyObject *result = NULL;
    if (rc == 0) {
        result = Py_NewRef(Py_None);
    } else if (rc > 0) {
        PyObject *head = PyBytes_FromStringAndSize(buf.data ? buf.data : "", buf.len);
        PyObject *priv = rec_to_tuple(&rec);
        if (head && priv)
            result = Py_BuildValue("(OOO)", head, priv, rec.src_internal ? Py_True : Py_False);
        Py_XDECREF(head);
        Py_XDECREF(priv);
    }
    ff_rec_clear(&rec);
    PyMem_Free(buf.data);
    ffn_free(n);
    return result;
}

static int tuple_to_rec(PyObject *t, FFRec *r)
{
    static const char *const directions[4] = {"internal_to_internal", "internal_to_external",
                                              "external_to_internal", "external_to_external"};
    PyObject *src_local, *dst_local, *sport, *dport, *direction, *duration, *icmp;
    if (!PyArg_ParseTuple(t, "dlOOdUUOOUUKKOO", &r->ts, &r->flags, &src_local, &dst_local, &r->res, &r->src,
                          &r->dst, &sport, &dport, &r->protocol, &direction, &r->packets, &r->bytes, &duration,
                          &icmp))
        return -1;
    Py_INCREF(r->src);
    Py_INCREF(r->dst);
    Py_INCREF(r->protocol);
    r->src_local = PyObject_IsTrue(src_local);
    r->dst_local = PyObject_IsTrue(dst_local);
    r->sport = sport == Py_None ? -1 : PyLong_AsLong(sport);
    r->dport = dport == Py_None ? -1 : PyLong_AsLong(dport);
    r->has_duration = duration != Py_None;
    r->duration = r->has_duration ? PyFloat_AsDouble(duration) : 0.0;
    r->icmp_type = icmp == Py_None ? -1 : PyLong_AsLong(icmp);
    r->direction = -1;
    for (int i = 0; i < 4; i++)
        if (PyUnicode_CompareWithASCIIString(direction, directions[i]) == 0)
            r->direction = i;
    r->src_internal = r->direction == FF_INT_INT || r->direction == FF_INT_EXT;
    r->is_tcp = PyUnicode_CompareWithASCIIString(r->protocol, "tcp") == 0;
    r->is_icmp = PyUnicode_CompareWithASCIIString(r->protocol, "icmp") == 0 ||
                 PyUnicode_CompareWithASCIIString(r->protocol, "icmpv6") == 0;
    r->is_port_protocol = r->is_tcp || PyUnicode_CompareWithASCIIString(r->protocol, "udp") == 0 ||
                          PyUnicode_CompareWithASCIIString(r->protocol, "sctp") == 0;
    if (PyErr_Occurred())
        return -1;
    if (r->direction < 0) {
        PyErr_SetString(PyExc_ValueError, "not a direction");
        return -1;
    }
    return 0;
}

/* observe_only(detector, private) -> (tags, repeat or None, escalated): what
 * FlowDetector.observe would add to the event, from the compiled detector. */
static PyObject *observe_only(PyObject *module, PyObject *args)
{
    PyObject *detector, *priv;
    if (!PyArg_ParseTuple(args, "OO!", &detector, &PyTuple_Type, &priv))
        return NULL;
    FFRec rec;
    memset(&rec, 0, sizeof rec);
    if (tuple_to_rec(priv, &rec) < 0) {
        ff_rec_clear(&rec);
        return NULL;
    }
    FFDetector *d = ffd_new(detector);
    if (d == NULL) {
        ff_rec_clear(&rec);
        return NULL;
    }
    FFTags tags = {0, -1, 0};
    int rc = ffd_observe(d, &rec, &tags);
    ffd_free(d);
    ff_rec_clear(&rec);
    if (rc < 0)
        return NULL;
    PyObject *names = PyList_New(0);
    if (names == NULL)
        return NULL;
    for (int i = 0; i < FF_TAG_COUNT; i++) {
        if (!(tags.tags & (1u << i)))
            continue;
        PyObject *name = PyUnicode_FromString(TAG_NAMES[i]);
        if (name == NULL || PyList_Append(names, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(name);
    }
    PyObject *repeat = tags.repeat < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(tags.repeat);
    if (repeat == NULL) {
        Py_DECREF(names);
        return NULL;
    }
    return Py_BuildValue("(NNO)", names, repeat, tags.escalated ? Py_True : Py_False);
}

/* mirrored(detector) -> bool: whether the compiled detector observes this
 * FlowDetector's flows itself (False: each through FlowDetector.observe). */
static PyObject *mirrored(PyObject *module, PyObject *detector)
{
    FFDetector *d = ffd_new(detector);
    if (d == NULL)
        return NULL;
    int yes = ffd_mirrored(d);
    ffd_free(d);
    return PyBool_FromLong(yes);
}

static PyMethodDef module_methods[] = {
    {"normalize_only", normalize_only, METH_VARARGS, "The compiled normaliser alone (tests)."},
    {"observe_only", observe_only, METH_VARARGS, "The compiled detector alone (tests)."},
    {"mirrored", mirrored, METH_O, "Whether the compiled detector observes this detector itself (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef flowfast_module = {
    PyModuleDef_HEAD_INIT, "flowfast",
    "The NetFlow normaliser's compiled fast path (see csrc/flowfast.h).", -1, module_methods,
};

PyMODINIT_FUNC PyInit_flowfast(void)
{
    if (PyType_Ready(&EngineType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&flowfast_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
