/* detect.FlowDetector.observe, compiled (see flowfast.h).
 *
 * It works on the Python detector's own containers (the windows' dicts and lists, the
 * sessions, beacons and _verdicts dicts: none is ever rebound after construction), so a
 * flow observed here and one observed by the Python code update one state. Every number
 * read from those containers goes through num_cmp / num_arith, which do what Python's
 * float/int operators do for any number type a state file may hold (ints and floats);
 * the common case (floats for times, small ints for counts) runs without objects.
 * The rare paths call the Python code, before anything is changed, so the result is
 * the Python code's by construction: a window that is full (_evict), a beacon series or
 * verdict memo of an unusual shape, a value out of the ranges the C arithmetic covers.
 * A detector whose settings are not the plain ints and floats of NetflowSettings (or a
 * detect.py whose constants no longer match these) observes every flow through
 * FlowDetector.observe itself.
 */
#include "flowfast.h"
#include <math.h>
#include <string.h>

/* detect.py's constants: checked against the module in ffd_new */
#define SYN 0x02
#define ACK 0x10
#define RST 0x04
#define FIN 0x01
#define PSH 0x08
#define EPHEMERAL 1024
#define SESSION_IDLE 3600.0
#define ATTEMPT_SECONDS 60.0
#define PROBE_PACKET_BYTES 100
#define PROBE_MAX_PACKETS 8
#define SUM_BUCKETS 256
#define BIN 60.0
#define BLOCK_EVENTS 8
#define MIN_BLOCKS 16
#define MAX_FANO 0.1
#define MAX_BINS 512
#define EXACT53 9007199254740992LL   /* 2**53: ints up to this are exact doubles */

/* libm's pow through a pointer the compiler cannot see through: Python's float ** calls
 * pow() at run time, and gcc would otherwise turn pow(x, 2.0) into x * x */
static double (*volatile ff_pow)(double, double) = pow;

typedef struct {
    PyObject *obj;      /* the Python int */
    long long v;        /* its value, LLONG_MAX when larger */
} Thresh;

typedef struct {
    uint64_t bits[1024];
    PyObject *generic;  /* the frozenset, when it holds anything but ints (then asked) */
} PortSet;

typedef struct {
    PyObject *obj, *data;
    double window, step;
    Py_ssize_t limit, keep;
} Win;

struct FFDetector {
    PyObject *det;
    int python_only;            /* observe every flow through FlowDetector.observe */
    PyObject *observe;          /* det.observe (python_only) */
    Win scan_ports, scan_hosts, brute, outbound, dns, dos, scan_repeat;
    PyObject *sessions, *beacons, *verdicts;
    Thresh port_scan_ports, port_scan_hosts, port_scan_repeat, brute_force_connections, high_outbound_bytes,
        dns_flows, dns_bytes, dos_packets;
    Py_ssize_t max_tracked;
    long long beacon_intervals;
    double min_interval, max_jitter;
    PortSet lateral, sensitive, usual_out, beacon_ignored, brute_ports, dns_ports;
};

/* ---- once per process: detect.py's tables ---- */

static uint64_t services[1024];
static int services_ready;
static PyObject *port_texts[65536];
static const char *const TAG_TEXT[FF_TAG_COUNT] = {
    "possible_port_scan", "high_outbound_bytes", "possible_beaconing", "possible_lateral_movement",
    "suspicious_dns_flow", "external_inbound_sensitive_service", "unusual_outbound_port", "possible_dos",
    "possible_brute_force",
};

static int has_port(const uint64_t *bits, long port)
{
    return port >= 0 && port <= 65535 && (bits[port >> 6] >> (port & 63)) & 1;
}

static int module_constant(PyObject *module, const char *name, double want)
{
    PyObject *v = PyObject_GetAttrString(module, name);
    if (v == NULL)
        return -1;
    double got = PyFloat_AsDouble(v);
    int same = (PyLong_CheckExact(v) || PyFloat_CheckExact(v)) && got == want;
    Py_DECREF(v);
    if (got == -1.0 && PyErr_Occurred())
        return -1;
    if (!same) {
        PyErr_Format(PyExc_RuntimeError, "detect.%s changed: csrc/detect.c must follow it", name);
        return -1;
    }
    return 0;
}

static int load_tables(void)
{
    if (services_ready)
        return 0;
    PyObject *module = PyImport_ImportModule("wazuh_anomaly.netflow.detect");
    if (module == NULL)
        return -1;
    static const struct { const char *name; double value; } constants[] = {
        {"SYN", SYN}, {"ACK", ACK}, {"RST", RST}, {"FIN", FIN}, {"PSH", PSH}, {"_EPHEMERAL", EPHEMERAL},
        {"_SESSION_IDLE", SESSION_IDLE}, {"_ATTEMPT_SECONDS", ATTEMPT_SECONDS},
        {"_PROBE_PACKET_BYTES", PROBE_PACKET_BYTES}, {"_PROBE_MAX_PACKETS", PROBE_MAX_PACKETS},
        {"_SUM_BUCKETS", SUM_BUCKETS}, {"_BIN", BIN}, {"_BLOCK_EVENTS", BLOCK_EVENTS},
        {"_MIN_BLOCKS", MIN_BLOCKS}, {"_MAX_FANO", MAX_FANO}, {"_MAX_BINS", MAX_BINS},
    };
    int rc = -1;
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (module_constant(module, constants[i].name, constants[i].value) < 0)
            goto done;
    PyObject *table = PyObject_GetAttrString(module, "_SERVICES");
    if (table == NULL)
        goto done;
    if (!PyDict_Check(table)) {
        Py_DECREF(table);
        PyErr_SetString(PyExc_RuntimeError, "detect._SERVICES is not a dict: csrc/detect.c must follow it");
        goto done;
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(table, &pos, &k, &v)) {
        long p = PyLong_CheckExact(k) ? PyLong_AsLong(k) : -1;
        if (p < 0 || p > 65535) {
            PyErr_Clear();
            Py_DECREF(table);
            PyErr_SetString(PyExc_RuntimeError, "detect._SERVICES holds a key that is not a port number");
            goto done;
        }
        services[p >> 6] |= 1ULL << (p & 63);
    }
    Py_DECREF(table);
    services_ready = 1;
    rc = 0;
done:
    Py_DECREF(module);
    return rc;
}

/* str(port) */
static PyObject *port_text(long port)
{
    if (port < 0 || port > 65535)
        return PyUnicode_FromFormat("%ld", port);
    if (port_texts[port] == NULL) {
        port_texts[port] = PyUnicode_FromFormat("%ld", port);
        if (port_texts[port] == NULL)
            return NULL;
        PyUnicode_InternInPlace(&port_texts[port]);
    }
    return Py_NewRef(port_texts[port]);
}

/* ---- numbers as Python's operators see them ---- */

/* `o OP x` for a number object o (the state's) and a float x */
static int num_cmp(PyObject *o, double x, int op)
{
    double v;
    if (PyFloat_CheckExact(o)) {
        v = PyFloat_AS_DOUBLE(o);
    } else {
        int overflow = 0;
        long long i = PyLong_CheckExact(o) ? PyLong_AsLongLongAndOverflow(o, &overflow) : 0;
        if (PyLong_CheckExact(o) && !overflow && i >= -EXACT53 && i <= EXACT53) {
            v = (double)i;
        } else {
            PyErr_Clear();
            PyObject *f = PyFloat_FromDouble(x);
            if (f == NULL)
                return -1;
            int r = PyObject_RichCompareBool(o, f, op);
            Py_DECREF(f);
            return r;
        }
    }
    switch (op) {
    case Py_LT: return v < x;
    case Py_LE: return v <= x;
    case Py_EQ: return v == x;
    case Py_NE: return v != x;
    case Py_GT: return v > x;
    default: return v >= x;
    }
}

/* float(o), as float arithmetic converts an int: 0, or -1 with an exception */
static int num_arith(PyObject *o, double *out)
{
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    if (!PyLong_Check(o) && !PyFloat_Check(o)) {
        PyErr_Format(PyExc_TypeError, "unsupported operand type: '%.100s'", Py_TYPE(o)->tp_name);
        return -1;
    }
    *out = PyFloat_AsDouble(o);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* `o >= threshold` for a count or sum of the state */
static int ge_thresh(PyObject *o, const Thresh *t)
{
    if (PyLong_CheckExact(o)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (!overflow && t->v != LLONG_MAX)
            return v >= t->v;
        if (v == -1 && PyErr_Occurred())
            return -1;
    }
    return PyObject_RichCompareBool(o, t->obj, Py_GE);
}

/* list[i] += amount (or -= when sub), as Python ints (or whatever the state holds) add */
static int item_add(PyObject *list, Py_ssize_t i, unsigned long long amount, PyObject *amount_obj, int sub)
{
    PyObject *old = PyList_GET_ITEM(list, i), *now;
    if (PyLong_CheckExact(old) && (amount_obj == NULL || PyLong_CheckExact(amount_obj))) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(old, &overflow), r;
        if (amount_obj != NULL) {
            int o2;
            long long a = PyLong_AsLongLongAndOverflow(amount_obj, &o2);
            overflow |= o2;
            amount = (unsigned long long)a;
            if (a < 0)
                overflow = 1;
        }
        if (!overflow && amount <= (unsigned long long)LLONG_MAX &&
            !(sub ? __builtin_sub_overflow(v, (long long)amount, &r) : __builtin_add_overflow(v, (long long)amount, &r))) {
            now = PyLong_FromLongLong(r);
            if (now == NULL)
                return -1;
            PyList_SET_ITEM(list, i, now);
            Py_DECREF(old);
            return 0;
        }
        if (PyErr_Occurred())
            return -1;
    }
    PyObject *a = amount_obj ? Py_NewRef(amount_obj) : PyLong_FromUnsignedLongLong(amount);
    if (a == NULL)
        return -1;
    now = sub ? PyNumber_InPlaceSubtract(old, a) : PyNumber_InPlaceAdd(old, a);
    Py_DECREF(a);
    if (now == NULL)
        return -1;
    return PyList_SetItem(list, i, now);
}

/* Python's float ** 2 */
static double square(double x, int *overflow)
{
    if (isnan(x))
        return x;
    x = fabs(x);
    if (x == 0.0)
        return 0.0;
    if (x == 1.0)
        return 1.0;
    double r = ff_pow(x, 2.0);
    if (isinf(r) && isfinite(x))
        *overflow = 1;      /* Python raises OverflowError */
    return r;
}

/* sum() of floats as this Python adds them (3.12: compensated) */
typedef struct { double f, c; } FSum;
static void fsum_add(FSum *s, double x)
{
#if PY_VERSION_HEX >= 0x030C0000
    double t = s->f + x;
    if (fabs(s->f) >= fabs(x))
        s->c += (s->f - t) + x;
    else
        s->c += (x - t) + s->f;
    s->f = t;
#else
    s->f += x;
#endif
}
static double fsum_result(FSum *s)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (s->c && isfinite(s->c))
        return s->f + s->c;
#endif
    return s->f;
}

/* ---- keys: the f-strings of detect.py ---- */

typedef struct {
    PyObject *o;        /* a str, or NULL: the text below */
    const char *s;
    Py_ssize_t n;
} Piece;

static Piece P_STR(PyObject *o) { Piece p = {o, NULL, 0}; return p; }
static Piece P_TXT(const char *s) { Piece p = {NULL, s, (Py_ssize_t)strlen(s)}; return p; }

static PyObject *key_of(Piece *p, int k)
{
    Py_ssize_t total = 0;
    int ascii = 1;
    for (int i = 0; i < k; i++) {
        if (p[i].o != NULL) {
            if (!PyUnicode_IS_ASCII(p[i].o))
                ascii = 0;
            p[i].n = PyUnicode_GET_LENGTH(p[i].o);
            p[i].s = (const char *)PyUnicode_DATA(p[i].o);
        }
        total += p[i].n;
    }
    if (ascii) {
        PyObject *r = PyUnicode_New(total, 127);
        if (r == NULL)
            return NULL;
        char *w = (char *)PyUnicode_DATA(r);
        for (int i = 0; i < k; i++) {
            memcpy(w, p[i].s, p[i].n);
            w += p[i].n;
        }
        return r;
    }
    PyObject *parts = PyList_New(k);
    if (parts == NULL)
        return NULL;
    for (int i = 0; i < k; i++) {
        PyObject *o = p[i].o ? Py_NewRef(p[i].o) : PyUnicode_FromStringAndSize(p[i].s, p[i].n);
        if (o == NULL) {
            Py_DECREF(parts);
            return NULL;
        }
        PyList_SET_ITEM(parts, i, o);
    }
    PyObject *empty = PyUnicode_FromStringAndSize("", 0);
    PyObject *r = empty ? PyUnicode_Join(empty, parts) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(parts);
    return r;
}

/* f"{port}" (str(None) for a missing one); `buf` holds 24 bytes */
static const char *port_digits(long port, char *buf)
{
    if (port < 0)
        return "None";
    char *w = buf + 23;
    *w = '\0';
    unsigned long v = (unsigned long)port;
    do {
        *--w = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return w;
}

/* ---- calls into the Python code (rare paths) ---- */

static int call_truth(PyObject *obj, const char *method, PyObject *const *args, size_t n)
{
    PyObject *name = PyUnicode_FromString(method);
    if (name == NULL)
        return -1;
    PyObject *stack[8];
    stack[0] = obj;
    for (size_t i = 0; i < n; i++)
        stack[i + 1] = args[i];
    PyObject *r = PyObject_VectorcallMethod(name, stack, (n + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(name);
    if (r == NULL)
        return -1;
    int truth = PyObject_IsTrue(r);
    Py_DECREF(r);
    return truth;
}

static PyObject *call_object(PyObject *obj, const char *method, PyObject *const *args, size_t n)
{
    PyObject *name = PyUnicode_FromString(method);
    if (name == NULL)
        return NULL;
    PyObject *stack[8];
    stack[0] = obj;
    for (size_t i = 0; i < n; i++)
        stack[i + 1] = args[i];
    PyObject *r = PyObject_VectorcallMethod(name, stack, (n + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(name);
    return r;
}

/* ---- the windows ---- */

typedef struct {
    const FFRec *rec;
    PyObject *ts;       /* the flow's time as a float object, made when first stored (one per flow) */
} Flow;

static PyObject *ts_of(Flow *f)
{
    if (f->ts == NULL)
        f->ts = PyFloat_FromDouble(f->rec->ts);
    return f->ts;
}

/* _Seen.add: 1, 0, or -1 */
static int seen_add(Win *w, PyObject *key, PyObject *member, PyObject *ts_obj, double ts, const Thresh *threshold)
{
    PyObject *members = PyDict_GetItemWithError(w->data, key);
    if (members == NULL) {
        if (PyErr_Occurred())
            return -1;
        if (PyDict_GET_SIZE(w->data) >= w->limit) {
            PyObject *args[4] = {key, member, ts_obj, threshold->obj};
            return call_truth(w->obj, "add", args, 4);      /* _evict */
        }
        members = PyDict_New();
        if (members == NULL)
            return -1;
        int rc = PyDict_SetItem(w->data, key, members);
        Py_DECREF(members);
        if (rc < 0)
            return -1;
    } else {
        if (!PyDict_CheckExact(members)) {
            PyObject *args[4] = {key, member, ts_obj, threshold->obj};
            return call_truth(w->obj, "add", args, 4);
        }
        int there = PyDict_Contains(members, member);
        if (there < 0 || (there && PyDict_DelItem(members, member) < 0))
            return -1;
    }
    if (PyDict_SetItem(members, member, ts_obj) < 0)
        return -1;
    Py_ssize_t len = PyDict_GET_SIZE(members);
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    if (len > threshold->v) {
        PyDict_Next(members, &pos, &k, &v);
        Py_INCREF(k);
        int rc = PyDict_DelItem(members, k);
        Py_DECREF(k);
        if (rc < 0)
            return -1;
        len--;
    }
    if (len < threshold->v)
        return 0;
    pos = 0;
    if (!PyDict_Next(members, &pos, &k, &v)) {
        PyErr_SetNone(PyExc_StopIteration);
        return -1;
    }
    return num_cmp(v, ts - w->window, Py_GE);
}

/* _Sum.add: a new reference to the key's entry, or NULL */
static PyObject *sum_add(Win *w, PyObject *key, Flow *f, unsigned long long amount)
{
    double ts = f->rec->ts;
    PyObject *entry = PyDict_GetItemWithError(w->data, key);
    PyObject *items;
    if (entry == NULL) {
        if (PyErr_Occurred())
            return NULL;
        PyObject *a = PyLong_FromUnsignedLongLong(amount), *ts_obj = a ? ts_of(f) : NULL;
        if (ts_obj == NULL) {
            Py_XDECREF(a);
            return NULL;
        }
        if (PyDict_GET_SIZE(w->data) >= w->limit) {
            PyObject *args[3] = {key, ts_obj, a};
            PyObject *r = call_object(w->obj, "add", args, 3);    /* _evict */
            Py_DECREF(a);
            return r;
        }
        entry = Py_BuildValue("[Oi[[OOi]]]", a, 1, ts_obj, a, 1);
        Py_DECREF(a);
        if (entry == NULL || PyDict_SetItem(w->data, key, entry) < 0) {
            Py_XDECREF(entry);
            return NULL;
        }
        return entry;
    }
    if (!PyList_Check(entry) || PyList_GET_SIZE(entry) < 3 || !PyList_Check(items = PyList_GET_ITEM(entry, 2)) ||
        PyList_GET_SIZE(items) == 0 || !PyList_Check(PyList_GET_ITEM(items, PyList_GET_SIZE(items) - 1)) ||
        PyList_GET_SIZE(PyList_GET_ITEM(items, PyList_GET_SIZE(items) - 1)) < 3 ||
        !PyList_Check(PyList_GET_ITEM(items, 0)) || PyList_GET_SIZE(PyList_GET_ITEM(items, 0)) < 1) {
        PyObject *a = PyLong_FromUnsignedLongLong(amount);       /* not the shape to_json writes */
        if (a == NULL || ts_of(f) == NULL) {
            Py_XDECREF(a);
            return NULL;
        }
        PyObject *args[3] = {key, f->ts, a};
        PyObject *r = call_object(w->obj, "add", args, 3);
        Py_DECREF(a);
        return r;
    }
    Py_INCREF(entry);
    PyObject *last = PyList_GET_ITEM(items, PyList_GET_SIZE(items) - 1);
    double last_ts;
    if (num_arith(PyList_GET_ITEM(last, 0), &last_ts) < 0)
        goto fail;
    if (ts < last_ts + w->step) {
        if (item_add(last, 1, amount, NULL, 0) < 0 || item_add(last, 2, 1, NULL, 0) < 0 ||
            item_add(entry, 0, amount, NULL, 0) < 0 || item_add(entry, 1, 1, NULL, 0) < 0)
            goto fail;
        int fresh = num_cmp(PyList_GET_ITEM(PyList_GET_ITEM(items, 0), 0), ts - w->window, Py_GE);
        if (fresh < 0)
            goto fail;
        if (fresh)
            return entry;
    } else {
        PyObject *bucket = ts_of(f) ? Py_BuildValue("[OKi]", f->ts, amount, 1) : NULL;
        if (bucket == NULL)
            goto fail;
        int rc = PyList_Append(items, bucket);
        Py_DECREF(bucket);
        if (rc < 0 || item_add(entry, 0, amount, NULL, 0) < 0 || item_add(entry, 1, 1, NULL, 0) < 0)
            goto fail;
    }
    double horizon = ts - w->window;
    Py_ssize_t drop = 0;
    while (drop < PyList_GET_SIZE(items) - 1) {
        PyObject *item = PyList_GET_ITEM(items, drop);
        if (!PyList_Check(item) || PyList_GET_SIZE(item) < 3) {
            PyErr_SetString(PyExc_IndexError, "list index out of range");
            goto fail;
        }
        int old = num_cmp(PyList_GET_ITEM(item, 0), horizon, Py_LT);
        if (old < 0)
            goto fail;
        if (!old)
            break;
        if (item_add(entry, 0, 0, PyList_GET_ITEM(item, 1), 1) < 0 ||
            item_add(entry, 1, 0, PyList_GET_ITEM(item, 2), 1) < 0)
            goto fail;
        drop++;
    }
    if (drop && PyList_SetSlice(items, 0, drop, NULL) < 0)
        goto fail;
    return entry;
fail:
    Py_DECREF(entry);
    return NULL;
}

/* bisect.insort_right(times, ts) */
static int insort(PyObject *times, PyObject *ts_obj, double ts)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(times);
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        int gt = num_cmp(PyList_GET_ITEM(times, mid), ts, Py_GT);
        if (gt < 0)
            return -1;
        if (gt)
            hi = mid;
        else
            lo = mid + 1;
    }
    return PyList_Insert(times, lo, ts_obj);
}

/* appends ts, or inserts it in order */
static int add_time(PyObject *times, PyObject *ts_obj, double ts)
{
    Py_ssize_t n = PyList_GET_SIZE(times);
    int newest = n == 0 ? 1 : num_cmp(PyList_GET_ITEM(times, n - 1), ts, Py_LE);
    if (newest < 0)
        return -1;
    return newest ? PyList_Append(times, ts_obj) : insort(times, ts_obj, ts);
}

/* _Recent.add: the count, or -1 */
static Py_ssize_t recent_add(Win *w, PyObject *key, PyObject *ts_obj, double ts)
{
    PyObject *times = PyDict_GetItemWithError(w->data, key);
    if (times == NULL || !PyList_CheckExact(times)) {
        if (PyErr_Occurred())
            return -1;
        if (times != NULL || PyDict_GET_SIZE(w->data) >= w->limit) {
            PyObject *args[2] = {key, ts_obj};
            PyObject *r = call_object(w->obj, "add", args, 2);    /* _evict */
            if (r == NULL)
                return -1;
            Py_ssize_t count = PyLong_AsSsize_t(r);
            Py_DECREF(r);
            return count;
        }
        times = PyList_New(0);
        if (times == NULL)
            return -1;
        int rc = PyDict_SetItem(w->data, key, times);
        Py_DECREF(times);
        if (rc < 0)
            return -1;
    }
    if (add_time(times, ts_obj, ts) < 0)
        return -1;
    if (PyList_GET_SIZE(times) > w->keep && PyList_SetSlice(times, 0, 1, NULL) < 0)
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(times);
    if (n == 0) {
        PyErr_SetString(PyExc_IndexError, "list index out of range");
        return -1;
    }
    double horizon = ts - w->window;
    int fresh = num_cmp(PyList_GET_ITEM(times, 0), horizon, Py_GE);
    if (fresh < 0)
        return -1;
    if (fresh)
        return n;
    Py_ssize_t lo = 0, hi = n;          /* bisect_left(times, horizon) */
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        int lt = num_cmp(PyList_GET_ITEM(times, mid), horizon, Py_LT);
        if (lt < 0)
            return -1;
        if (lt)
            lo = mid + 1;
        else
            hi = mid;
    }
    return n - lo;
}

/* ---- the detector's own steps ---- */


static PyObject *port_obj(long port)
{
    return port < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(port);
}

/* FlowDetector._opening: 1, 0, or -1 */
static int opening(FFDetector *d, Flow *f)
{
    const FFRec *r = f->rec;
    if (r->flags)
        return (r->flags & SYN) != 0;
    if (ts_of(f) == NULL)
        return -1;
    char sp[24], dp[24];
    Piece p[9] = {P_STR(r->src), P_TXT(":"), P_TXT(port_digits(r->sport, sp)), P_TXT(">"), P_STR(r->dst),
                  P_TXT(":"), P_TXT(port_digits(r->dport, dp)), P_TXT("/"), P_STR(r->protocol)};
    PyObject *key = key_of(p, 9);
    if (key == NULL)
        return -1;
    int result = -1;
    PyObject *seen = PyDict_GetItemWithError(d->sessions, key);
    if (seen == NULL) {
        if (PyErr_Occurred())
            goto done;
        if (PyDict_GET_SIZE(d->sessions) >= d->max_tracked) {
            PyObject *flags = PyLong_FromLong(r->flags), *sport = port_obj(r->sport), *dport = port_obj(r->dport);
            if (flags && sport && dport) {
                PyObject *args[7] = {flags, r->src, sport, r->dst, dport, r->protocol, f->ts};
                result = call_truth(d->det, "_opening", args, 7);   /* _evict */
            }
            Py_XDECREF(flags);
            Py_XDECREF(sport);
            Py_XDECREF(dport);
            goto done;
        }
        if (PyDict_SetItem(d->sessions, key, f->ts) == 0)
            result = 1;
        goto done;
    }
    Py_INCREF(seen);
    double was;
    int later = num_cmp(seen, r->ts, Py_LT);
    if (later < 0 || num_arith(seen, &was) < 0 || (later && PyDict_SetItem(d->sessions, key, f->ts) < 0)) {
        Py_DECREF(seen);
        goto done;
    }
    Py_DECREF(seen);
    result = r->ts - was > SESSION_IDLE;
done:
    Py_DECREF(key);
    return result;
}

/* FlowDetector._regular over C times */
static int regular(FFDetector *d, const double *times, Py_ssize_t len, double res, int *overflow)
{
    Py_ssize_t n = len - 1;
    double mean = (times[n] - times[0]) / (double)n;
    if (mean < d->min_interval || mean <= 0)
        return 0;
    FSum s = {0.0, 0.0};
    for (Py_ssize_t i = 0; i < n; i++)
        fsum_add(&s, square(times[i + 1] - times[i] - mean, overflow));
    double var = fsum_result(&s) / (double)(n - 1);
    if (res) {
        double less = var - res * res / 6;
        var = less > 0.0 ? less : 0.0;
    }
    return sqrt(var) <= d->max_jitter * mean;
}

/* a list of floats as C doubles; 0 when some item is not a float (then Python decides) */
static int float_times(PyObject *list, double **out)
{
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!PyFloat_CheckExact(PyList_GET_ITEM(list, i)))
            return 0;
    *out = PyMem_Malloc((n ? n : 1) * sizeof(double));
    if (*out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        (*out)[i] = PyFloat_AS_DOUBLE(PyList_GET_ITEM(list, i));
    return 1;
}

#define NEED_PYTHON 2

/* _fano_is_periodic: 1 True, 0 False or None, NEED_PYTHON outside what C computes here */
static int fano(const double *bins_at, const long long *counts, Py_ssize_t len, double first_bin, double current)
{
    first_bin += BIN;
    double rb = nearbyint((current - first_bin) / BIN);
    if (!(fabs(rb) < 1e15))
        return NEED_PYTHON;
    long long bins = (long long)rb;
    if (bins <= 0)
        return 0;
    long long total = 0;
    for (Py_ssize_t i = 0; i < len; i++)
        if (first_bin <= bins_at[i] && bins_at[i] < current)
            total += counts[i];
    if (total == 0)
        return 0;
    double q = ceil((double)(BLOCK_EVENTS * bins) / (double)total);
    if (!(fabs(q) < 1e15))
        return NEED_PYTHON;
    long long block = (long long)q < 1 ? 1 : (long long)q;
    long long blocks = bins / block < 2 * MIN_BLOCKS ? bins / block : 2 * MIN_BLOCKS;
    if (blocks < MIN_BLOCKS)
        return 0;
    double start = current - (double)(blocks * block) * BIN;
    long long sums[2 * MIN_BLOCKS] = {0};
    for (Py_ssize_t i = 0; i < len; i++) {
        double b = bins_at[i];
        if (start <= b && b < current) {
            double r = nearbyint((b - start) / BIN);
            if (!(fabs(r) < 1e15))
                return NEED_PYTHON;
            long long at = (long long)r, index = at / block - ((at % block != 0) && ((at < 0) != (block < 0)));
            if (index < 0 || index >= blocks)
                return NEED_PYTHON;     /* Python wraps a negative index or raises IndexError */
            sums[index] += counts[i];
        }
    }
    long long all = 0;
    for (long long i = 0; i < blocks; i++)
        all += sums[i];
    double mean = (double)all / (double)blocks;
    if (mean <= 0)
        return 0;
    FSum s = {0.0, 0.0};
    int overflow = 0;
    for (long long i = 0; i < blocks; i++)
        fsum_add(&s, square((double)sums[i] - mean, &overflow));
    if (overflow)
        return NEED_PYTHON;
    double var = fsum_result(&s) / (double)(blocks - 1);
    return var / mean <= MAX_FANO;
}

/* FlowDetector._binned_verdict: 1, 0, or -1 */
static int binned_verdict(FFDetector *d, PyObject *data, Flow *f)
{
    double current = f->rec->ts;
    Py_ssize_t len = PyList_GET_SIZE(data);
    /* the shape the code writes: [[float bin, int count], ...] with small counts */
    int plain = len > 0 && len < (1 << 20);
    long long positive = 0;
    for (Py_ssize_t i = 0; plain && i < len; i++) {
        PyObject *x = PyList_GET_ITEM(data, i);
        if (!PyList_CheckExact(x) || PyList_GET_SIZE(x) != 2 || !PyFloat_CheckExact(PyList_GET_ITEM(x, 0)) ||
            !PyLong_CheckExact(PyList_GET_ITEM(x, 1))) {
            plain = 0;
            break;
        }
        long c = PyLong_AsLong(PyList_GET_ITEM(x, 1));
        if (c == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            plain = 0;
        } else if (c < -(1L << 30) || c > (1L << 30)) {
            plain = 0;
        } else if (c > 0) {
            positive += c;
        }
    }
    if (!plain) {
        PyObject *args[2] = {data, f->ts};
        return call_truth(d->det, "_binned_verdict", args, 2);
    }
    double *at = PyMem_Malloc(len * sizeof(double));
    long long *counts = PyMem_Malloc(len * sizeof(long long));
    long long n = d->beacon_intervals;
    long long room = n + 1 < positive ? n + 1 : positive;
    double *times = PyMem_Malloc((room > 0 ? room : 1) * sizeof(double));
    int verdict = -1;
    if (at == NULL || counts == NULL || times == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *x = PyList_GET_ITEM(data, i);
        at[i] = PyFloat_AS_DOUBLE(PyList_GET_ITEM(x, 0));
        counts[i] = PyLong_AsLong(PyList_GET_ITEM(x, 1));
    }
    /* the last n+1 openings before the current bin, one time each (collected newest first) */
    long long got = 0;
    for (Py_ssize_t i = len - 1; i >= 0; i--) {
        if (at[i] >= current)
            continue;
        long long k = counts[i] < n + 1 - got ? counts[i] : n + 1 - got;
        for (long long j = 0; j < k; j++)
            times[got++] = at[i];
        if (got > n)
            break;
    }
    for (long long i = 0, j = got - 1; i < j; i++, j--) {
        double t = times[i];
        times[i] = times[j];
        times[j] = t;
    }
    if (got > n && times[got - 1] - times[0] >= 2 * BIN * (double)n) {
        int overflow = 0;
        verdict = regular(d, times, got, BIN, &overflow);
        if (!overflow)
            goto done;
    } else {
        verdict = fano(at, counts, len, at[0], current);
        if (verdict != NEED_PYTHON)
            goto done;
    }
    {
        PyObject *args[2] = {data, f->ts};
        verdict = call_truth(d->det, "_binned_verdict", args, 2);
    }
done:
    PyMem_Free(at);
    PyMem_Free(counts);
    PyMem_Free(times);
    return verdict;
}

/* entry[2] = max(entry[2], ts) */
static int newest_time(PyObject *entry, Flow *f)
{
    int later = num_cmp(PyList_GET_ITEM(entry, 2), f->rec->ts, Py_LT);
    if (later < 0)
        return -1;
    if (later) {
        Py_INCREF(f->ts);
        if (PyList_SetItem(entry, 2, f->ts) < 0)
            return -1;
    }
    return 0;
}

/* FlowDetector._beaconing: 1, 0, or -1 */
static int beaconing(FFDetector *d, PyObject *key, Flow *f)
{
    double ts = f->rec->ts;
    if (ts_of(f) == NULL)
        return -1;
    long binned = f->rec->res ? 1 : 0;
    PyObject *entry = PyDict_GetItemWithError(d->beacons, key);
    if (entry == NULL && PyErr_Occurred())
        return -1;
    int python = 0;
    if (entry != NULL) {
        if (!PyList_Check(entry) || PyList_GET_SIZE(entry) < 3) {
            python = 1;
        } else {
            PyObject *kind = PyList_GET_ITEM(entry, 0);
            int differs;
            if (PyLong_CheckExact(kind)) {
                int overflow;
                long long k = PyLong_AsLongLongAndOverflow(kind, &overflow);
                differs = overflow || k != binned;
            } else {
                PyObject *b = PyLong_FromLong(binned);
                differs = b ? PyObject_RichCompareBool(kind, b, Py_NE) : -1;
                Py_XDECREF(b);
            }
            if (differs < 0)
                return -1;
            if (differs)
                entry = NULL;
            else if (!PyList_CheckExact(PyList_GET_ITEM(entry, 1)))
                python = 1;
        }
    } else if (PyDict_GET_SIZE(d->beacons) >= d->max_tracked) {
        python = 1;     /* _evict */
    }
    if (python) {
        PyObject *res = PyFloat_FromDouble(f->rec->res);
        if (res == NULL)
            return -1;
        PyObject *args[3] = {key, f->ts, res};
        int r = call_truth(d->det, "_beaconing", args, 3);
        Py_DECREF(res);
        return r;
    }
    if (entry == NULL) {
        entry = Py_BuildValue("[l[]O]", binned, f->ts);
        if (entry == NULL)
            return -1;
        int rc = PyDict_SetItem(d->beacons, key, entry);
        Py_DECREF(entry);
        if (rc < 0)
            return -1;
    }
    Py_INCREF(entry);
    int verdict = -1;
    PyObject *data = PyList_GET_ITEM(entry, 1);
    Py_INCREF(data);
    long long n = d->beacon_intervals;
    if (!binned) {
        if (add_time(data, f->ts, ts) < 0)
            goto done;
        if (PyList_GET_SIZE(data) > n + 1 && PyList_SetSlice(data, 0, 1, NULL) < 0)
            goto done;
        if (newest_time(entry, f) < 0)
            goto done;
        if (PyList_GET_SIZE(data) <= n) {
            verdict = 0;
            goto done;
        }
        double *times;
        int plain = float_times(data, &times);
        if (plain < 0)
            goto done;
        if (plain) {
            int overflow = 0;
            verdict = regular(d, times, PyList_GET_SIZE(data), 0.0, &overflow);
            PyMem_Free(times);
            if (!overflow)
                goto done;
        }
        PyObject *zero = PyFloat_FromDouble(0.0);
        if (zero == NULL)
            goto done;
        PyObject *args[2] = {data, zero};
        verdict = call_truth(d->det, "_regular", args, 2);
        Py_DECREF(zero);
        goto done;
    }
    /* binned: [[bin, openings], ...] in bin order */
    Py_ssize_t len = PyList_GET_SIZE(data);
    PyObject *newest = len ? PyList_GET_ITEM(data, len - 1) : NULL;
    if (newest != NULL && (!PyList_Check(newest) || PyList_GET_SIZE(newest) < 2)) {
        PyErr_SetString(PyExc_TypeError, "a beacon bin is not a [bin, openings] list");
        goto done;
    }
    int same = newest ? num_cmp(PyList_GET_ITEM(newest, 0), ts, Py_EQ) : 0;
    if (same < 0)
        goto done;
    if (same) {
        if (item_add(newest, 1, 1, NULL, 0) < 0)
            goto done;
        PyObject *known = PyDict_GetItemWithError(d->verdicts, key);
        if (known == NULL && PyErr_Occurred())
            goto done;
        if (known != NULL) {
            if (!PyTuple_Check(known) || PyTuple_GET_SIZE(known) < 2) {
                PyErr_SetString(PyExc_TypeError, "a beacon verdict is not a (bin, verdict) tuple");
                goto done;
            }
            Py_INCREF(known);
            int now = num_cmp(PyTuple_GET_ITEM(known, 0), ts, Py_EQ);
            if (now > 0) {
                int r = newest_time(entry, f);
                verdict = r < 0 ? -1 : PyObject_IsTrue(PyTuple_GET_ITEM(known, 1));
                Py_DECREF(known);
                goto done;
            }
            Py_DECREF(known);
            if (now < 0)
                goto done;
        }
    } else {
        int later = newest ? num_cmp(PyList_GET_ITEM(newest, 0), ts, Py_LT) : 1;
        if (later < 0)
            goto done;
        if (later) {
            PyObject *bin = Py_BuildValue("[Oi]", f->ts, 1);
            if (bin == NULL)
                goto done;
            int rc = PyList_Append(data, bin);
            Py_DECREF(bin);
            if (rc < 0)
                goto done;
            double horizon = ts - MAX_BINS * BIN;
            for (;;) {
                PyObject *first = PyList_GET_ITEM(data, 0);
                if (!PyList_Check(first) || PyList_GET_SIZE(first) < 1) {
                    PyErr_SetString(PyExc_TypeError, "a beacon bin is not a [bin, openings] list");
                    goto done;
                }
                int old = num_cmp(PyList_GET_ITEM(first, 0), horizon, Py_LT);
                if (old < 0)
                    goto done;
                if (!old)
                    break;
                if (PyList_SetSlice(data, 0, 1, NULL) < 0)
                    goto done;
            }
        } else {
            /* i = bisect_left(data, [ts, 0]): [b, c] < [ts, 0] is b < ts, or b == ts and c < 0 */
            Py_ssize_t lo = 0, hi = len;
            while (lo < hi) {
                Py_ssize_t mid = (lo + hi) / 2;
                PyObject *x = PyList_GET_ITEM(data, mid);
                if (!PyList_Check(x) || PyList_GET_SIZE(x) < 2) {
                    PyErr_SetString(PyExc_TypeError, "a beacon bin is not a [bin, openings] list");
                    goto done;
                }
                int lt = num_cmp(PyList_GET_ITEM(x, 0), ts, Py_LT), eq = 0, neg = 0;
                if (lt == 0) {
                    eq = num_cmp(PyList_GET_ITEM(x, 0), ts, Py_EQ);
                    if (eq > 0)
                        neg = num_cmp(PyList_GET_ITEM(x, 1), 0.0, Py_LT);
                }
                if (lt < 0 || eq < 0 || neg < 0)
                    goto done;
                if (lt || neg)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            int at = 0;
            if (lo < len) {
                at = num_cmp(PyList_GET_ITEM(PyList_GET_ITEM(data, lo), 0), ts, Py_EQ);
                if (at < 0)
                    goto done;
            }
            if (at) {
                if (item_add(PyList_GET_ITEM(data, lo), 1, 1, NULL, 0) < 0)
                    goto done;
            } else {
                PyObject *bin = Py_BuildValue("[Oi]", f->ts, 1);
                if (bin == NULL)
                    goto done;
                int rc = PyList_Insert(data, lo, bin);
                Py_DECREF(bin);
                if (rc < 0)
                    goto done;
            }
        }
    }
    if (newest_time(entry, f) < 0)
        goto done;
    verdict = binned_verdict(d, data, f);
    if (verdict < 0)
        goto done;
    len = PyList_GET_SIZE(data);
    int is_newest = len ? num_cmp(PyList_GET_ITEM(PyList_GET_ITEM(data, len - 1), 0), ts, Py_EQ) : 0;
    if (is_newest < 0) {
        verdict = -1;
        goto done;
    }
    if (is_newest) {
        if (PyDict_GET_SIZE(d->verdicts) >= d->max_tracked)
            PyDict_Clear(d->verdicts);
        PyObject *memo = PyTuple_Pack(2, f->ts, verdict ? Py_True : Py_False);
        if (memo == NULL || PyDict_SetItem(d->verdicts, key, memo) < 0)
            verdict = -1;
        Py_XDECREF(memo);
    } else {
        int there = PyDict_Contains(d->verdicts, key);
        if (there < 0 || (there && PyDict_DelItem(d->verdicts, key) < 0))
            verdict = -1;
    }
done:
    Py_DECREF(data);
    Py_DECREF(entry);
    return verdict;
}

/* ---- the whole observe, through Python (a detector this file does not mirror) ---- */

static int observe_python(FFDetector *d, const FFRec *r, FFTags *out)
{
    static const char *const directions[4] = {"internal_to_internal", "internal_to_external",
                                              "external_to_internal", "external_to_external"};
    PyObject *sport = port_obj(r->sport), *dport = port_obj(r->dport);
    PyObject *duration = r->has_duration ? PyFloat_FromDouble(r->duration) : Py_NewRef(Py_None);
    PyObject *icmp = r->icmp_type < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(r->icmp_type);
    PyObject *event = NULL, *tags = NULL;
    int rc = -1;
    if (sport && dport && duration && icmp)
        event = Py_BuildValue("{s{s[]}s(dlOOdOOOOOsKKOO)}", "anomaly", "tags", "_", r->ts, r->flags,
                              r->src_local ? Py_True : Py_False, r->dst_local ? Py_True : Py_False, r->res, r->src,
                              r->dst, sport, dport, r->protocol, directions[r->direction & 3], r->packets, r->bytes,
                              duration, icmp);
    if (event == NULL)
        goto done;
    tags = PyObject_CallOneArg(d->observe, event);
    if (tags == NULL)
        goto done;
    out->tags = 0;
    Py_ssize_t n = PySequence_Size(tags);
    if (n < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *tag = PySequence_GetItem(tags, i);
        if (tag == NULL)
            goto done;
        for (int t = 0; t < FF_TAG_COUNT; t++)
            if (PyUnicode_Check(tag) && PyUnicode_CompareWithASCIIString(tag, TAG_TEXT[t]) == 0)
                out->tags |= 1u << t;
        Py_DECREF(tag);
    }
    PyObject *anomaly = PyDict_GetItemString(event, "anomaly");
    PyObject *scan = anomaly ? PyDict_GetItemString(anomaly, "port_scan") : NULL;
    PyObject *repeat = scan && PyDict_Check(scan) ? PyDict_GetItemString(scan, "repeat") : NULL;
    out->repeat = repeat ? PyLong_AsLongLong(repeat) : -1;
    if (out->repeat == -1 && PyErr_Occurred())
        goto done;
    out->escalated = anomaly && PyDict_GetItemString(anomaly, "escalated") != NULL;
    rc = 0;
done:
    Py_XDECREF(sport);
    Py_XDECREF(dport);
    Py_XDECREF(duration);
    Py_XDECREF(icmp);
    Py_XDECREF(event);
    Py_XDECREF(tags);
    return rc;
}

/* ---- construction ---- */

static int read_thresh(PyObject *t, const char *name, Thresh *out)
{
    out->obj = PyObject_GetAttrString(t, name);
    if (out->obj == NULL)
        return -1;
    if (!PyLong_CheckExact(out->obj))
        return 1;
    int overflow;
    out->v = PyLong_AsLongLongAndOverflow(out->obj, &overflow);
    if (out->v == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0)
        out->v = LLONG_MAX;
    return (overflow < 0 || out->v < 1) ? 1 : 0;
}

static Py_ssize_t clamp_size(long long v)
{
    return v > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : (Py_ssize_t)v;
}

/* 0, 1 (not plain: observe through Python), -1 */
static int read_win(PyObject *det, const char *name, Win *w, int sum, int recent)
{
    w->obj = PyObject_GetAttrString(det, name);
    if (w->obj == NULL)
        return -1;
    w->data = PyObject_GetAttrString(w->obj, "data");
    PyObject *window = PyObject_GetAttrString(w->obj, "window");
    PyObject *limit = PyObject_GetAttrString(w->obj, "limit");
    PyObject *step = sum ? PyObject_GetAttrString(w->obj, "step") : NULL;
    PyObject *keep = recent ? PyObject_GetAttrString(w->obj, "keep") : NULL;
    int rc = -1;
    if (w->data == NULL || window == NULL || limit == NULL || (sum && step == NULL) || (recent && keep == NULL))
        goto done;
    rc = 1;
    if (!PyDict_CheckExact(w->data) || !(PyLong_CheckExact(window) || PyFloat_CheckExact(window)) ||
        !PyLong_CheckExact(limit) || (sum && !PyFloat_CheckExact(step)) || (recent && !PyLong_CheckExact(keep)))
        goto done;
    int overflow;
    w->window = PyFloat_AsDouble(window);
    if (w->window == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();      /* too large for a float: Python raises at the first flow */
        goto done;
    }
    w->step = sum ? PyFloat_AS_DOUBLE(step) : 0.0;
    long long v = PyLong_AsLongLongAndOverflow(limit, &overflow);
    if (overflow < 0)
        goto done;
    w->limit = overflow > 0 ? PY_SSIZE_T_MAX : clamp_size(v);
    if (recent) {
        v = PyLong_AsLongLongAndOverflow(keep, &overflow);
        if (overflow < 0 || (!overflow && v < 1))
            goto done;
        w->keep = overflow > 0 ? PY_SSIZE_T_MAX : clamp_size(v);
    }
    rc = 0;
done:
    Py_XDECREF(window);
    Py_XDECREF(limit);
    Py_XDECREF(step);
    Py_XDECREF(keep);
    return rc;
}

/* 0, 1 (not plain), -1 */
static int read_ports(PyObject *det, const char *name, PortSet *set)
{
    PyObject *ports = PyObject_GetAttrString(det, name);
    if (ports == NULL)
        return -1;
    if (!PyFrozenSet_CheckExact(ports)) {
        Py_DECREF(ports);
        return 1;
    }
    PyObject *it = PyObject_GetIter(ports), *item;
    if (it == NULL) {
        Py_DECREF(ports);
        return -1;
    }
    while ((item = PyIter_Next(it)) != NULL) {
        int overflow = 1;
        long long p = PyLong_Check(item) ? PyLong_AsLongLongAndOverflow(item, &overflow) : -1;
        if (!PyLong_Check(item) && set->generic == NULL)
            set->generic = Py_NewRef(ports);
        Py_DECREF(item);
        if (p == -1 && PyErr_Occurred())
            break;
        if (!overflow && p >= 0 && p <= 65535)
            set->bits[p >> 6] |= 1ULL << (p & 63);
    }
    Py_DECREF(it);
    Py_DECREF(ports);
    return PyErr_Occurred() ? -1 : 0;
}

static int in_ports(const PortSet *set, long port)
{
    if (set->generic == NULL || port < 0)
        return port >= 0 && has_port(set->bits, port);
    PyObject *p = PyLong_FromLong(port);
    if (p == NULL)
        return -1;
    int r = PySet_Contains(set->generic, p);
    Py_DECREF(p);
    return r;
}

static void win_clear(Win *w)
{
    Py_CLEAR(w->obj);
    Py_CLEAR(w->data);
}

void ffd_free(FFDetector *d)
{
    if (d == NULL)
        return;
    Py_XDECREF(d->det);
    Py_XDECREF(d->observe);
    win_clear(&d->scan_ports);
    win_clear(&d->scan_hosts);
    win_clear(&d->brute);
    win_clear(&d->outbound);
    win_clear(&d->dns);
    win_clear(&d->dos);
    win_clear(&d->scan_repeat);
    Py_XDECREF(d->sessions);
    Py_XDECREF(d->beacons);
    Py_XDECREF(d->verdicts);
    Thresh *ts[] = {&d->port_scan_ports, &d->port_scan_hosts, &d->port_scan_repeat, &d->brute_force_connections,
                    &d->high_outbound_bytes, &d->dns_flows, &d->dns_bytes, &d->dos_packets};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        Py_XDECREF(ts[i]->obj);
    PortSet *sets[] = {&d->lateral, &d->sensitive, &d->usual_out, &d->beacon_ignored, &d->brute_ports, &d->dns_ports};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        Py_XDECREF(sets[i]->generic);
    PyMem_Free(d);
}

static int read_float(PyObject *t, const char *name, double *out)
{
    PyObject *v = PyObject_GetAttrString(t, name);
    if (v == NULL)
        return -1;
    int rc = 1;
    if (PyFloat_CheckExact(v)) {
        *out = PyFloat_AS_DOUBLE(v);
        rc = 0;
    } else if (PyLong_CheckExact(v)) {
        int overflow;
        long long i = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow && i >= -EXACT53 && i <= EXACT53) {
            *out = (double)i;
            rc = 0;
        }
    }
    Py_DECREF(v);
    return rc;
}

FFDetector *ffd_new(PyObject *detector)
{
    if (load_tables() < 0)
        return NULL;
    FFDetector *d = PyMem_Calloc(1, sizeof *d);
    if (d == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    d->det = Py_NewRef(detector);
    int plain = 0, rc;
    PyObject *t = NULL;
#define STEP(call) do { rc = (call); if (rc < 0) goto fail; plain |= rc; } while (0)
    STEP(read_win(detector, "scan_ports", &d->scan_ports, 0, 0));
    STEP(read_win(detector, "scan_hosts", &d->scan_hosts, 0, 0));
    STEP(read_win(detector, "brute", &d->brute, 0, 1));
    STEP(read_win(detector, "outbound", &d->outbound, 1, 0));
    STEP(read_win(detector, "dns", &d->dns, 1, 0));
    STEP(read_win(detector, "dos", &d->dos, 1, 0));
    STEP(read_win(detector, "scan_repeat", &d->scan_repeat, 0, 1));
    if ((d->sessions = PyObject_GetAttrString(detector, "sessions")) == NULL ||
        (d->beacons = PyObject_GetAttrString(detector, "beacons")) == NULL ||
        (d->verdicts = PyObject_GetAttrString(detector, "_verdicts")) == NULL ||
        (t = PyObject_GetAttrString(detector, "t")) == NULL)
        goto fail;
    plain |= !PyDict_CheckExact(d->sessions) || !PyDict_CheckExact(d->beacons) || !PyDict_CheckExact(d->verdicts);
    STEP(read_thresh(t, "port_scan_ports", &d->port_scan_ports));
    STEP(read_thresh(t, "port_scan_hosts", &d->port_scan_hosts));
    STEP(read_thresh(t, "port_scan_repeat", &d->port_scan_repeat));
    STEP(read_thresh(t, "brute_force_connections", &d->brute_force_connections));
    STEP(read_thresh(t, "high_outbound_bytes", &d->high_outbound_bytes));
    STEP(read_thresh(t, "dns_flows", &d->dns_flows));
    STEP(read_thresh(t, "dns_bytes", &d->dns_bytes));
    STEP(read_thresh(t, "dos_packets", &d->dos_packets));
    {
        Thresh max_tracked = {NULL, 0};
        rc = read_thresh(t, "max_tracked", &max_tracked);
        Py_XDECREF(max_tracked.obj);
        if (rc < 0)
            goto fail;
        plain |= rc;
        d->max_tracked = clamp_size(max_tracked.v);
        Thresh intervals = {NULL, 0};
        PyObject *n = PyObject_GetAttrString(detector, "beacon_intervals");
        if (n == NULL)
            goto fail;
        intervals.obj = n;
        if (PyLong_CheckExact(n)) {
            int overflow;
            intervals.v = PyLong_AsLongLongAndOverflow(n, &overflow);
            plain |= overflow || intervals.v < 2 || intervals.v > (1LL << 40);
        } else {
            plain = 1;
        }
        Py_DECREF(n);
        d->beacon_intervals = intervals.v;
    }
    STEP(read_float(t, "beaconing_min_interval", &d->min_interval));
    STEP(read_float(t, "beaconing_max_jitter", &d->max_jitter));
    STEP(read_ports(detector, "lateral", &d->lateral));
    STEP(read_ports(detector, "sensitive", &d->sensitive));
    STEP(read_ports(detector, "usual_out", &d->usual_out));
    STEP(read_ports(detector, "beacon_ignored", &d->beacon_ignored));
    STEP(read_ports(detector, "brute_ports", &d->brute_ports));
    STEP(read_ports(detector, "dns_ports", &d->dns_ports));
#undef STEP
    Py_DECREF(t);
    if (plain) {
        d->python_only = 1;
        d->observe = PyObject_GetAttrString(detector, "observe");
        if (d->observe == NULL) {
            ffd_free(d);
            return NULL;
        }
    }
    return d;
fail:
    Py_XDECREF(t);
    ffd_free(d);
    return NULL;
}

/* ---- observe ---- */

int ffd_mirrored(const FFDetector *d)
{
    return !d->python_only;
}

int ffd_observe(FFDetector *d, const FFRec *r, FFTags *out)
{
    if (d->python_only)
        return observe_python(d, r, out);
    out->tags = 0;
    out->repeat = -1;
    out->escalated = 0;
    long sport = r->sport, dport = r->dport;
    double ts = r->ts;

    /* a server's answer rather than a connection attempt (is_reply) */
    if (r->icmp_type >= 0) {
        if (r->icmp_type == 0 || r->icmp_type == 129)
            return 0;
    } else if (sport >= 0 && dport >= 0 &&
               ((sport < EPHEMERAL && EPHEMERAL <= dport) ||
                (has_port(services, sport) && !has_port(services, dport) && dport >= EPHEMERAL))) {
        if ((r->flags & RST) && !(r->flags & (SYN | PSH)) && r->packets <= 4 && r->is_tcp && !r->src_local) {
            Piece p[3] = {P_STR(r->dst), P_TXT(">"), P_STR(r->src)};
            PyObject *key = key_of(p, 3), *member = key ? port_text(sport) : NULL;
            PyObject *ts_obj = member ? PyFloat_FromDouble(ts) : NULL;
            int rc = ts_obj ? seen_add(&d->scan_ports, key, member, ts_obj, ts, &d->port_scan_ports) : -1;
            Py_XDECREF(key);
            Py_XDECREF(member);
            Py_XDECREF(ts_obj);
            return rc < 0 ? -1 : 0;
        }
        return 0;
    }
    int has_ports = dport >= 0 && r->is_port_protocol;
    Flow f = {r, NULL};
    int result = -1, rc;
    PyObject *key = NULL, *entry = NULL;
    char dp[24];

    /* port scan: many ports of one host, or one port (or ICMP) across many hosts, by probes */
    if (!r->dst_local) {
        int probe;
        if (r->is_tcp) {
            if (r->flags)
                probe = !(r->flags & ACK) || (!(r->flags & PSH) && r->packets <= 4);
            else
                probe = r->packets <= PROBE_MAX_PACKETS && r->bytes <= r->packets * PROBE_PACKET_BYTES;
        } else {
            probe = r->is_icmp || r->packets <= 2;
        }
        if (probe) {
            int scanned = 0;
            if (has_ports) {
                Piece p[3] = {P_STR(r->src), P_TXT(">"), P_STR(r->dst)};
                PyObject *member = port_text(dport);
                key = member ? key_of(p, 3) : NULL;
                scanned = key && ts_of(&f) ? seen_add(&d->scan_ports, key, member, f.ts, ts, &d->port_scan_ports) : -1;
                Py_XDECREF(member);
                Py_CLEAR(key);
                if (scanned < 0)
                    goto done;
            }
            if (has_ports) {
                Piece p[5] = {P_STR(r->src), P_TXT(">"), P_STR(r->protocol), P_TXT(":"),
                              P_TXT(port_digits(dport, dp))};
                key = key_of(p, 5);
            } else {
                Piece p[3] = {P_STR(r->src), P_TXT(">"), P_STR(r->protocol)};
                key = key_of(p, 3);
            }
            if (key == NULL || ts_of(&f) == NULL)
                goto done;
            rc = seen_add(&d->scan_hosts, key, r->dst, f.ts, ts, &d->port_scan_hosts);
            Py_CLEAR(key);
            if (rc < 0)
                goto done;
            if (rc || scanned) {
                out->tags |= FF_TAG_PORT_SCAN;
                Py_ssize_t repeat = recent_add(&d->scan_repeat, r->src, f.ts, ts);
                if (repeat < 0)
                    goto done;
                out->repeat = repeat;
                out->escalated = repeat >= d->port_scan_repeat.v;
            }
        }
    }

    int opened = -1;        /* None */
    if (r->direction == FF_INT_EXT) {
        entry = sum_add(&d->outbound, r->src, &f, r->bytes);
        if (entry == NULL)
            goto done;
        rc = ge_thresh(PyList_GET_ITEM(entry, 0), &d->high_outbound_bytes);
        Py_CLEAR(entry);
        if (rc < 0)
            goto done;
        if (rc)
            out->tags |= FF_TAG_OUTBOUND;
        if (has_ports) {
            rc = in_ports(&d->beacon_ignored, dport);
            if (rc < 0)
                goto done;
            if (!rc) {
                opened = opening(d, &f);
                if (opened < 0)
                    goto done;
                if (opened) {
                    Piece p[7] = {P_STR(r->src), P_TXT(">"), P_STR(r->dst), P_TXT(":"), P_STR(r->protocol),
                                  P_TXT("/"), P_TXT(port_digits(dport, dp))};
                    key = key_of(p, 7);
                    rc = key ? beaconing(d, key, &f) : -1;
                    Py_CLEAR(key);
                    if (rc < 0)
                        goto done;
                    if (rc)
                        out->tags |= FF_TAG_BEACONING;
                }
            }
        }
    } else if (r->direction == FF_INT_INT) {
        if (has_ports && !r->dst_local) {
            rc = in_ports(&d->lateral, dport);
            if (rc < 0)
                goto done;
            if (rc) {
                opened = opening(d, &f);
                if (opened < 0)
                    goto done;
                if (opened)
                    out->tags |= FF_TAG_LATERAL;
            }
        }
    }

    if (has_ports) {
        rc = in_ports(&d->dns_ports, dport);
        if (rc < 0)
            goto done;
        if (rc) {
            entry = sum_add(&d->dns, r->src, &f, r->bytes);
            if (entry == NULL)
                goto done;
            if (PyList_GET_SIZE(entry) != 3) {
                PyErr_SetString(PyExc_ValueError, "a DNS window entry is not [sent, flows, buckets]");
                goto done;
            }
            rc = ge_thresh(PyList_GET_ITEM(entry, 1), &d->dns_flows);
            if (rc == 0)
                rc = ge_thresh(PyList_GET_ITEM(entry, 0), &d->dns_bytes);
            Py_CLEAR(entry);
            if (rc < 0)
                goto done;
            if (rc)
                out->tags |= FF_TAG_DNS;
        }
    }

    if (r->direction == FF_EXT_INT && has_ports) {
        rc = in_ports(&d->sensitive, dport);
        if (rc < 0)
            goto done;
        if (rc)
            out->tags |= FF_TAG_INBOUND;
    }

    if (r->direction == FF_INT_EXT && has_ports) {
        rc = in_ports(&d->usual_out, dport);
        if (rc < 0)
            goto done;
        if (!rc)
            out->tags |= FF_TAG_UNUSUAL;
    }

    /* the packets to one destination */
    entry = sum_add(&d->dos, r->dst, &f, r->packets);
    if (entry == NULL)
        goto done;
    rc = ge_thresh(PyList_GET_ITEM(entry, 0), &d->dos_packets);
    Py_CLEAR(entry);
    if (rc < 0)
        goto done;
    if (rc)
        out->tags |= FF_TAG_DOS;

    if (r->is_tcp && has_ports) {
        rc = in_ports(&d->brute_ports, dport);
        if (rc < 0)
            goto done;
        if (rc) {
            int attempt;
            if (r->flags) {
                attempt = (r->flags & SYN) && (!(r->flags & ACK) || (r->flags & (FIN | RST)));
            } else {
                if (opened < 0) {
                    opened = opening(d, &f);
                    if (opened < 0)
                        goto done;
                }
                attempt = opened && (!r->has_duration || r->duration < ATTEMPT_SECONDS);
            }
            if (attempt) {
                Piece p[5] = {P_STR(r->src), P_TXT(">"), P_STR(r->dst), P_TXT(":"), P_TXT(port_digits(dport, dp))};
                key = key_of(p, 5);
                Py_ssize_t count = key && ts_of(&f) ? recent_add(&d->brute, key, f.ts, ts) : -1;
                Py_CLEAR(key);
                if (count < 0)
                    goto done;
                if (count >= d->brute_force_connections.v)
                    out->tags |= FF_TAG_BRUTE;
            }
        }
    }
    result = 0;
done:
    Py_XDECREF(key);
    Py_XDECREF(entry);
    Py_XDECREF(f.ts);
    return result;
}
