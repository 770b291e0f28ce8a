/* The compiled normaliser of csrc/flowfast.h: normalize.Normalizer.normalize for the
 * common, well-formed pmacct record of either dialect (pmacctd's print plugin, nfacctd).
 *
 * It takes only what it reproduces for certain and declines the rest (return 0, nothing
 * written, nothing held), leaving the line to the Python normaliser, which then gives the
 * same event or the BadRecord reason. What it takes:
 * - ip_src, ip_dst: str; their scope from the AddressBook's cache (the same dict), or on
 *   a miss from AddressBook.scope itself (which fills that cache as the Python path would);
 * - ip_proto (or proto): a str or int the Normalizer's `_protocols` cache knows, or that
 *   normalize._protocol accepts (then cached as the Python path caches it);
 * - ports: missing, null or an int 0-65535; bytes and packets: missing or an int 0-2^64-1;
 * - times: "YYYY-MM-DD HH:MM:SS" (pmacctd's bins, nfacctd without fraction) or with a
 *   fraction of 1 to 9 digits (nfacctd), ASCII, a ' ' or 'T' between date and time, no
 *   zone; placeholders ("0000-00-00...", "1970-01-01 00:00:00...") skipped as in Python;
 * - tcp_flags (TCP only): missing, null, an int 0-4095 or 1 to 4 ASCII digits (0-4095);
 * - peer_ip_src: a str; its exporter name from the `_exporters` cache or normalize.clip.
 * Everything else (numeric or zoned times, counts as strings or floats, hex flags, a value
 * of another type, anything the Python code rejects) is declined.
 *
 * The tables (services, TCP flag names, protocol classes, directions, scopes) are read
 * from the Python modules when the normaliser is made, so both paths use one copy.
 */
#include "flowfast.h"
#include <string.h>

enum {
    K_IP_SRC, K_IP_DST, K_IP_PROTO, K_PROTO, K_PORT_SRC, K_PORT_DST, K_BYTES, K_PACKETS, K_PEER,
    K_TS_START, K_TS_END, K_STAMP_INSERTED, K_STAMP_UPDATED, K_TCP_FLAGS, K_COUNT
};
static const char *const KEY_NAMES[K_COUNT] = {
    "ip_src", "ip_dst", "ip_proto", "proto", "port_src", "port_dst", "bytes", "packets", "peer_ip_src",
    "timestamp_start", "timestamp_end", "stamp_inserted", "stamp_updated", "tcp_flags",
};

/* The cache limits of normalize.Normalizer.normalize (literals there). */
#define MAX_CACHED_PROTOCOLS 256
#define MAX_CACHED_EXPORTERS 1024

#define MAX_SERVICES 512
#define MAX_TCP_FLAGS 16
#define PROTO_CLASSES 8
#define HEADS 2
#define DURATIONS 1024

typedef struct {
    PyObject *protocol;         /* owned: keeps the pointer from being reused */
    int is_tcp, is_icmp, is_port;
} ProtoClass;

typedef struct {
    long port;
    char *fragment;             /* ,"service":{"name":"ssh"} */
    Py_ssize_t len;
} Service;

#define KEY_SLOTS 64

struct FFNormalizer {
    PyObject *key_objects[KEY_SLOTS];   /* held: the key objects seen, by address */
    int key_indexes[KEY_SLOTS];         /* their K_*, or -1 */
    PyObject *scopes;           /* normalizer.addresses.cache: text -> EXTERNAL / INTERNAL / LOCAL */
    PyObject *scope;            /* normalizer.addresses.scope */
    PyObject *protocols;        /* normalizer._protocols */
    PyObject *protocol_of;      /* normalize._protocol */
    PyObject *exporters;        /* normalizer._exporters */
    PyObject *clip;             /* normalize.clip */
    PyObject *max_name;         /* normalize.MAX_NAME */
    PyObject *icmp_set;         /* normalize._ICMP */
    PyObject *port_set;         /* normalize._PORT_PROTOCOLS */
    PyObject *round_name;       /* "__round__" */
    PyObject *three;            /* 3 */
    long external, local;       /* normalize.EXTERNAL, normalize.LOCAL */
    unsigned long long max_packet_bytes;
    char *directions[4];        /* ,"direction":"internal_to_internal" ... */
    Py_ssize_t direction_len[4];
    Service services[MAX_SERVICES];
    int n_services;
    long flag_bits[MAX_TCP_FLAGS];
    char flag_names[MAX_TCP_FLAGS][16];
    Py_ssize_t flag_lens[MAX_TCP_FLAGS];
    int n_flags;
    ProtoClass classes[PROTO_CLASSES];
    int next_class;
    /* the minutes last parsed: the first 16 characters -> epoch seconds */
    char heads[HEADS][16];
    long long head_minutes[HEADS];
    int n_heads, next_head;
    /* end - start -> round(seconds, 3), keyed by the bits of the double */
    unsigned long long duration_keys[DURATIONS];
    double duration_values[DURATIONS];
    char duration_texts[DURATIONS][32];     /* the value as JSON (ffbuf_json_float) */
    unsigned char duration_lens[DURATIONS]; /* 0: slot empty */
};

/* ---- making and freeing ---- */

static void free_tables(FFNormalizer *n)
{
    for (int i = 0; i < 4; i++) {
        PyMem_Free(n->directions[i]);
        n->directions[i] = NULL;
    }
    for (int i = 0; i < n->n_services; i++)
        PyMem_Free(n->services[i].fragment);
    n->n_services = 0;
}

void ffn_free(FFNormalizer *n)
{
    if (n == NULL)
        return;
    for (int i = 0; i < KEY_SLOTS; i++)
        Py_XDECREF(n->key_objects[i]);
    Py_XDECREF(n->scopes);
    Py_XDECREF(n->scope);
    Py_XDECREF(n->protocols);
    Py_XDECREF(n->protocol_of);
    Py_XDECREF(n->exporters);
    Py_XDECREF(n->clip);
    Py_XDECREF(n->max_name);
    Py_XDECREF(n->icmp_set);
    Py_XDECREF(n->port_set);
    Py_XDECREF(n->round_name);
    Py_XDECREF(n->three);
    for (int i = 0; i < PROTO_CLASSES; i++)
        Py_XDECREF(n->classes[i].protocol);
    free_tables(n);
    PyMem_Free(n);
}

/* A JSON fragment: prefix, the JSON string of `text`, suffix (a new PyMem block). */
static char *fragment(const char *prefix, PyObject *text, const char *suffix, Py_ssize_t *len)
{
    FFBuf b = {NULL, 0, 0};
    if (ffbuf_puts(&b, prefix) < 0 || ffbuf_json_str(&b, text) < 0 || ffbuf_puts(&b, suffix) < 0) {
        PyMem_Free(b.data);
        return NULL;
    }
    *len = b.len;
    return b.data;
}

static PyObject *attr(PyObject *o, const char *name)
{
    return PyObject_GetAttrString(o, name);
}

static int exact_long(PyObject *o, long *v)
{
    int overflow;
    if (o == NULL || !PyLong_CheckExact(o))
        return -1;
    *v = PyLong_AsLongAndOverflow(o, &overflow);
    if (overflow || (*v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* The tables of the Python modules, as C data. 0, or -1 with an exception set. */
static int read_tables(FFNormalizer *n, PyObject *module)
{
    int rc = -1;
    PyObject *directions = NULL, *services = NULL, *tables = NULL, *flags = NULL, *v = NULL;
    long external, local, max_packet_bytes;

    directions = attr(module, "DIRECTIONS");
    if (directions == NULL)
        goto done;
    if (!PyTuple_Check(directions) || PyTuple_GET_SIZE(directions) != 4) {
        PyErr_SetString(PyExc_TypeError, "normalize.DIRECTIONS is not a tuple of four");
        goto done;
    }
    for (int i = 0; i < 4; i++) {
        n->directions[i] = fragment(",\"direction\":", PyTuple_GET_ITEM(directions, i), "", &n->direction_len[i]);
        if (n->directions[i] == NULL)
            goto done;
    }
    services = attr(module, "_SERVICES");
    if (services == NULL)
        goto done;
    if (!PyDict_Check(services)) {
        PyErr_SetString(PyExc_TypeError, "normalize._SERVICES is not a dict");
        goto done;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(services, &pos, &key, &value)) {
        long port;
        if (exact_long(key, &port) < 0 || port < 0 || port > 65535 || !PyUnicode_Check(value) ||
            n->n_services >= MAX_SERVICES) {
            PyErr_SetString(PyExc_TypeError, "normalize._SERVICES is not a table of ports to names");
            goto done;
        }
        /* kept sorted by port: insertion */
        int at = n->n_services;
        while (at > 0 && n->services[at - 1].port > port) {
            n->services[at] = n->services[at - 1];
            at--;
        }
        Service s = {port, NULL, 0};
        s.fragment = fragment(",\"service\":{\"name\":", value, "}", &s.len);
        if (s.fragment == NULL) {
            memmove(&n->services[at], &n->services[at + 1], sizeof(Service) * (size_t)(n->n_services - at));
            goto done;
        }
        n->services[at] = s;
        n->n_services++;
    }
    tables = attr(module, "tables");
    if (tables == NULL)
        goto done;
    flags = attr(tables, "TCP_FLAGS");
    if (flags == NULL)
        goto done;
    if (!PyTuple_Check(flags) || PyTuple_GET_SIZE(flags) > MAX_TCP_FLAGS) {
        PyErr_SetString(PyExc_TypeError, "tables.TCP_FLAGS is not a tuple of (bit, name)");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(flags); i++) {
        PyObject *pair = PyTuple_GET_ITEM(flags, i);
        long bit;
        Py_ssize_t len;
        const char *name = NULL;
        if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2 && exact_long(PyTuple_GET_ITEM(pair, 0), &bit) == 0 &&
            PyUnicode_Check(PyTuple_GET_ITEM(pair, 1)))
            name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(pair, 1), &len);
        if (name == NULL || len < 1 || len > 15) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "tables.TCP_FLAGS is not a tuple of (bit, short name)");
            goto done;
        }
        for (Py_ssize_t c = 0; c < len; c++) {
            if (!((name[c] >= 'A' && name[c] <= 'Z') || (name[c] >= 'a' && name[c] <= 'z'))) {
                PyErr_SetString(PyExc_TypeError, "tables.TCP_FLAGS has a name that is not a word");
                goto done;
            }
        }
        n->flag_bits[i] = bit;
        memcpy(n->flag_names[i], name, (size_t)len);
        n->flag_names[i][len] = '\0';
        n->flag_lens[i] = len;
        n->n_flags = (int)i + 1;
    }
    if ((v = attr(module, "EXTERNAL")) == NULL || exact_long(v, &external) < 0)
        goto bad_constant;
    Py_CLEAR(v);
    if ((v = attr(module, "LOCAL")) == NULL || exact_long(v, &local) < 0)
        goto bad_constant;
    Py_CLEAR(v);
    if ((v = attr(module, "MAX_PACKET_BYTES")) == NULL || exact_long(v, &max_packet_bytes) < 0 || max_packet_bytes < 0)
        goto bad_constant;
    Py_CLEAR(v);
    /* MAX_COUNT must be the largest unsigned 64-bit number: the C counts are that */
    if ((v = attr(module, "MAX_COUNT")) == NULL || !PyLong_CheckExact(v))
        goto bad_constant;
    unsigned long long max_count = PyLong_AsUnsignedLongLong(v);
    if (max_count != ~0ULL || PyErr_Occurred())
        goto bad_constant;
    Py_CLEAR(v);
    n->external = external;
    n->local = local;
    n->max_packet_bytes = (unsigned long long)max_packet_bytes;
    rc = 0;
    goto done;
bad_constant:
    if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_OverflowError)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "a constant of normalize (EXTERNAL, LOCAL, MAX_PACKET_BYTES, MAX_COUNT) "
                                         "is not what the compiled normaliser was written for");
    }
done:
    Py_XDECREF(v);
    Py_XDECREF(directions);
    Py_XDECREF(services);
    Py_XDECREF(tables);
    Py_XDECREF(flags);
    return rc;
}

FFNormalizer *ffn_new(PyObject *normalizer)
{
    FFNormalizer *n = PyMem_Calloc(1, sizeof *n);
    if (n == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    PyObject *addresses = NULL, *module = NULL, *name = NULL;
    addresses = attr(normalizer, "addresses");
    if (addresses == NULL)
        goto fail;
    n->scopes = attr(addresses, "cache");
    n->scope = attr(addresses, "scope");
    n->protocols = attr(normalizer, "_protocols");
    n->exporters = attr(normalizer, "_exporters");
    if (n->scopes == NULL || n->scope == NULL || n->protocols == NULL || n->exporters == NULL)
        goto fail;
    if (!PyDict_CheckExact(n->scopes) || !PyDict_CheckExact(n->protocols) || !PyDict_CheckExact(n->exporters)) {
        PyErr_SetString(PyExc_TypeError, "the Normalizer's caches are not dicts");
        goto fail;
    }
    /* the module that defines the Normalizer's class: its helpers and tables */
    name = PyObject_GetAttrString((PyObject *)Py_TYPE(normalizer), "__module__");
    if (name == NULL)
        goto fail;
    module = PyImport_Import(name);
    if (module == NULL)
        goto fail;
    n->protocol_of = attr(module, "_protocol");
    n->clip = attr(module, "clip");
    n->max_name = attr(module, "MAX_NAME");
    n->icmp_set = attr(module, "_ICMP");
    n->port_set = attr(module, "_PORT_PROTOCOLS");
    if (n->protocol_of == NULL || n->clip == NULL || n->max_name == NULL || n->icmp_set == NULL || n->port_set == NULL)
        goto fail;
    if (!PyAnySet_Check(n->icmp_set) || !PyAnySet_Check(n->port_set)) {
        PyErr_SetString(PyExc_TypeError, "normalize._ICMP or _PORT_PROTOCOLS is not a set");
        goto fail;
    }
    if (read_tables(n, module) < 0)
        goto fail;
    n->round_name = PyUnicode_InternFromString("__round__");
    n->three = PyLong_FromLong(3);
    if (n->round_name == NULL || n->three == NULL)
        goto fail;
    Py_DECREF(addresses);
    Py_DECREF(module);
    Py_DECREF(name);
    return n;
fail:
    Py_XDECREF(addresses);
    Py_XDECREF(module);
    Py_XDECREF(name);
    ffn_free(n);
    return NULL;
}

/* ---- the pieces of one record ---- */

/* Which field a key of the record is: K_*, -1 another key, -2 not a str (decline: a key
 * of another type could equal a field's name). orjson gives the same key objects again
 * and again (its key cache): they are remembered by address (held, so never reused). */
static int key_index(FFNormalizer *n, PyObject *key)
{
    unsigned slot = (unsigned)(((uintptr_t)key >> 4) ^ ((uintptr_t)key >> 10)) & (KEY_SLOTS - 1);
    if (n->key_objects[slot] == key)
        return n->key_indexes[slot];
    if (!PyUnicode_CheckExact(key))
        return -2;
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(key, &len);
    if (text == NULL) {
        PyErr_Clear();
        return -2;
    }
    int index = -1;
    for (int i = 0; i < K_COUNT; i++) {
        if ((size_t)len == strlen(KEY_NAMES[i]) && memcmp(text, KEY_NAMES[i], (size_t)len) == 0) {
            index = i;
            break;
        }
    }
    Py_XDECREF(n->key_objects[slot]);
    Py_INCREF(key);
    n->key_objects[slot] = key;
    n->key_indexes[slot] = index;
    return index;
}

/* A port: 0-65535, -1 for None or missing; -2: decline. */
static long port_of(PyObject *v)
{
    long port;
    if (v == NULL || v == Py_None)
        return -1;
    if (exact_long(v, &port) < 0 || port < 0 || port > 65535)
        return -2;
    return port;
}

/* A count: 0 on success, -1: decline. */
static int count_of(PyObject *v, unsigned long long *count)
{
    if (v == NULL) {
        *count = 0;
        return 0;
    }
    if (!PyLong_CheckExact(v))
        return -1;
    int overflow;
    long long small = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow == 0) {
        if (small < 0)          /* negative (or -1 with an error, impossible for an int) */
            return -1;
        *count = (unsigned long long)small;
        return 0;
    }
    if (overflow < 0)
        return -1;
    unsigned long long big = PyLong_AsUnsignedLongLong(v);
    if (big == (unsigned long long)-1 && PyErr_Occurred()) {  /* 2^64 or more */
        PyErr_Clear();
        return -1;
    }
    *count = big;
    return 0;
}

static inline int is_digit(char c)
{
    return (unsigned char)(c - '0') <= 9;
}

static const char *const PLACEHOLDERS[2] = {"0000-00-00", "1970-01-01 00:00:00"};
static const size_t PLACEHOLDER_LENS[2] = {10, 19};

/* What normalize does with a time value when choosing the start key:
 * 0 not set (missing, None, "", a placeholder), 1 a str to parse, -1 decline. */
static int time_value(PyObject *v, const char **text, Py_ssize_t *len)
{
    if (v == NULL || v == Py_None)
        return 0;
    if (!PyUnicode_CheckExact(v))
        return -1;
    const char *s = PyUnicode_AsUTF8AndSize(v, len);
    if (s == NULL) {
        PyErr_Clear();
        return -1;
    }
    if (*len == 0)
        return 0;
    for (int i = 0; i < 2; i++) {
        size_t p = PLACEHOLDER_LENS[i];
        if ((size_t)*len >= p && memcmp(s, PLACEHOLDERS[i], p) == 0)
            return 0;
    }
    *text = s;
    return 1;
}

static const int DAYS_IN_MONTH[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

static int two(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* core.timeparse.minute_epoch of 16 checked characters; 0, or -1 when it gives None. */
static int minute_epoch(const char *s, long long *epoch)
{
    long long year = two(s) * 100 + two(s + 2);
    int month = two(s + 5), day = two(s + 8), hour = two(s + 11), minute = two(s + 14);
    if (month < 1 || month > 12 || hour > 23 || minute > 59 || year < 1)
        return -1;
    int leap = month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    if (day < 1 || day > DAYS_IN_MONTH[month - 1] + leap)
        return -1;
    /* days_from_civil (H. Hinnant); the year is >= 0 here, so C's division is floor division */
    long long y = year - (month <= 2);
    long long era = y / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    *epoch = (era * 146097 + doe - 719468) * 86400 + hour * 3600 + minute * 60;
    return 0;
}

static const double POW10[10] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/* The epoch seconds of "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DD HH:MM:SS.f" (1 to 9 digits),
 * ASCII, ' ' or 'T' at 10: what Clock.parse (and normalize's inlined copy of it) gives,
 * minute + float(value[17:]). Its ISO text is value[:10] + "T" + value[11:] + "Z".
 * 0, or -1: not this shape, or a value the Python code rejects (decline). */
static int parse_time(FFNormalizer *n, const char *s, Py_ssize_t len, double *epoch)
{
    if (len != 19 && (len < 21 || len > 29 || s[19] != '.'))
        return -1;
    /* "dddd-dd-dd dd:dd:dd" ('T' or ' ' at 10), checked without a branch a character */
    if (!(is_digit(s[0]) & is_digit(s[1]) & is_digit(s[2]) & is_digit(s[3]) & (s[4] == '-') & is_digit(s[5]) &
          is_digit(s[6]) & (s[7] == '-') & is_digit(s[8]) & is_digit(s[9]) & ((s[10] == ' ') | (s[10] == 'T')) &
          is_digit(s[11]) & is_digit(s[12]) & (s[13] == ':') & is_digit(s[14]) & is_digit(s[15]) & (s[16] == ':') &
          is_digit(s[17]) & is_digit(s[18])))
        return -1;
    unsigned long long fraction = 0;
    int digits = 0;
    for (Py_ssize_t i = 20; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        fraction = fraction * 10 + (unsigned long long)(s[i] - '0');
        digits++;
    }
    int seconds = two(s + 17);
    if (seconds > 60)           /* 0 <= seconds < 61 */
        return -1;
    long long minute = 0;
    int found = 0;
    for (int i = 0; i < n->n_heads; i++) {
        if (memcmp(n->heads[i], s, 16) == 0) {
            minute = n->head_minutes[i];
            found = 1;
            break;
        }
    }
    if (!found) {
        if (minute_epoch(s, &minute) < 0)
            return -1;
        int at = n->next_head;
        memcpy(n->heads[at], s, 16);
        n->head_minutes[at] = minute;
        n->next_head = (at + 1) % HEADS;
        if (n->n_heads < HEADS)
            n->n_heads++;
    }
    /* float("SS.fff"): the integer SSfff (below 2^53) over a power of ten (exact), one
     * correctly rounded division: the double nearest the decimal, as float() gives */
    double value = digits ? (double)((unsigned long long)seconds * (unsigned long long)POW10[digits] + fraction) /
                                POW10[digits]
                          : (double)seconds;
    *epoch = (double)minute + value;
    return 0;
}

/* round(seconds, 3), as the Python code computes it (float.__round__), and its JSON text,
 * cached. 0, 1: decline (a value orjson would not write as Python's repr), -1: error. */
static int duration_of(FFNormalizer *n, double seconds, double *value, const char **text, Py_ssize_t *len)
{
    unsigned long long bits;
    memcpy(&bits, &seconds, sizeof bits);
    unsigned long long h = bits * 0x9E3779B97F4A7C15ULL;
    unsigned slot = (unsigned)(h >> 54) & (DURATIONS - 1);
    if (n->duration_lens[slot] && n->duration_keys[slot] == bits) {
        *value = n->duration_values[slot];
        *text = n->duration_texts[slot];
        *len = n->duration_lens[slot];
        return 0;
    }
    PyObject *f = PyFloat_FromDouble(seconds);
    if (f == NULL)
        return -1;
    PyObject *args[2] = {f, n->three};
    PyObject *r = PyObject_VectorcallMethod(n->round_name, args, 2, NULL);
    Py_DECREF(f);
    if (r == NULL)
        return -1;
    if (!PyFloat_CheckExact(r)) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TypeError, "round() of a float is not a float");
        return -1;
    }
    double v = PyFloat_AS_DOUBLE(r);
    Py_DECREF(r);
    /* orjson writes these as Python's repr does (no exponent, and not "1e-05") */
    if (!(v == 0.0 || (v >= 0.001 && v < 1e15)))
        return 1;
    FFBuf b = {NULL, 0, 0};
    if (ffbuf_json_float(&b, v) < 0) {
        PyMem_Free(b.data);
        return -1;
    }
    if (b.len < 1 || b.len > 31) {
        PyMem_Free(b.data);
        return 1;
    }
    n->duration_keys[slot] = bits;
    n->duration_values[slot] = v;
    memcpy(n->duration_texts[slot], b.data, (size_t)b.len);
    n->duration_lens[slot] = (unsigned char)b.len;
    PyMem_Free(b.data);
    *value = v;
    *text = n->duration_texts[slot];
    *len = n->duration_lens[slot];
    return 0;
}

/* The scope of an address: the AddressBook's cache, else AddressBook.scope (which fills
 * it). 0/1/2, or -1: decline (not an address: the Python path says why). */
static long scope_of(FFNormalizer *n, PyObject *text)
{
    long scope;
    PyObject *hit = PyDict_GetItemWithError(n->scopes, text);
    if (hit != NULL)
        return exact_long(hit, &scope) == 0 && scope >= 0 && scope <= 2 ? scope : -1;
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    PyObject *r = PyObject_CallOneArg(n->scope, text);
    if (r == NULL) {
        PyErr_Clear();          /* BadRecord: the Python path raises it again, with its reason */
        return -1;
    }
    int ok = exact_long(r, &scope) == 0 && scope >= 0 && scope <= 2;
    Py_DECREF(r);
    return ok ? scope : -1;
}

/* The protocol name of ip_proto: a new reference, or NULL: decline. As normalize does:
 * the `_protocols` cache for a str or int, else normalize._protocol (cached the same way). */
static PyObject *protocol_of(FFNormalizer *n, PyObject *value)
{
    if (!PyUnicode_CheckExact(value) && !PyLong_CheckExact(value))
        return NULL;
    PyObject *hit = PyDict_GetItemWithError(n->protocols, value);
    if (hit != NULL) {
        if (!PyUnicode_CheckExact(hit))
            return NULL;
        Py_INCREF(hit);
        return hit;
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *name = PyObject_CallOneArg(n->protocol_of, value);
    if (name == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!PyUnicode_CheckExact(name)) {
        Py_DECREF(name);
        return NULL;
    }
    if (PyDict_GET_SIZE(n->protocols) < MAX_CACHED_PROTOCOLS && PyDict_SetItem(n->protocols, value, name) < 0) {
        PyErr_Clear();
        Py_DECREF(name);
        return NULL;
    }
    return name;
}

/* The classes of a protocol name (tcp, ICMP_PROTOCOLS, PORT_PROTOCOLS); -1: decline. */
static int classify(FFNormalizer *n, PyObject *protocol, FFRec *rec)
{
    for (int i = 0; i < PROTO_CLASSES; i++) {
        if (n->classes[i].protocol == protocol) {
            rec->is_tcp = n->classes[i].is_tcp;
            rec->is_icmp = n->classes[i].is_icmp;
            rec->is_port_protocol = n->classes[i].is_port;
            return 0;
        }
    }
    int icmp = PySet_Contains(n->icmp_set, protocol);
    int port = PySet_Contains(n->port_set, protocol);
    int tcp = PyUnicode_CompareWithASCIIString(protocol, "tcp") == 0;
    if (icmp < 0 || port < 0 || PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    int at = n->next_class;
    n->next_class = (at + 1) % PROTO_CLASSES;
    Py_XDECREF(n->classes[at].protocol);
    Py_INCREF(protocol);
    n->classes[at].protocol = protocol;
    n->classes[at].is_tcp = rec->is_tcp = tcp;
    n->classes[at].is_icmp = rec->is_icmp = icmp;
    n->classes[at].is_port = rec->is_port_protocol = port;
    return 0;
}

/* The exporter name of peer_ip_src (a non-empty str): a new reference, or NULL: decline. */
static PyObject *exporter_of(FFNormalizer *n, PyObject *peer)
{
    PyObject *hit = PyDict_GetItemWithError(n->exporters, peer);
    if (hit != NULL) {
        Py_INCREF(hit);
        return hit;
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *name = PyObject_CallFunctionObjArgs(n->clip, peer, n->max_name, NULL);
    if (name == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (PyDict_GET_SIZE(n->exporters) < MAX_CACHED_EXPORTERS && PyDict_SetItem(n->exporters, peer, name) < 0) {
        PyErr_Clear();
        Py_DECREF(name);
        return NULL;
    }
    return name;
}

static const Service *service_of(const FFNormalizer *n, long port)
{
    int lo = 0, hi = n->n_services - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        long p = n->services[mid].port;
        if (p == port)
            return &n->services[mid];
        if (p < port)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* Can `text` be written (valid UTF-8: no lone surrogate)? */
static int writable(PyObject *text)
{
    Py_ssize_t len;
    if (PyUnicode_AsUTF8AndSize(text, &len) == NULL) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* Writes into room reserved before (ffbuf_reserve). */
static inline void raw(FFBuf *b, const char *s, Py_ssize_t len)
{
    memcpy(b->data + b->len, s, (size_t)len);
    b->len += len;
}

#define RAW(lit) raw(out, lit, (Py_ssize_t)sizeof(lit) - 1)

static inline void raw_uint(FFBuf *b, unsigned long long v)
{
    char tmp[20];
    int i = 20;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    raw(b, tmp + i, 20 - i);
}

/* value[:10] + "T" + value[11:] + "Z", quoted (checked: ASCII digits and separators only) */
static inline void raw_time(FFBuf *b, const char *s, Py_ssize_t len)
{
    char *o = b->data + b->len;
    *o++ = '"';
    memcpy(o, s, 10);
    o += 10;
    *o++ = 'T';
    memcpy(o, s + 11, (size_t)(len - 11));
    o += len - 11;
    *o++ = 'Z';
    *o++ = '"';
    b->len = o - b->data;
}

int ffn_normalize(FFNormalizer *n, PyObject *record, FFRec *rec, FFBuf *out)
{
    PyObject *exporter = NULL;
    Py_ssize_t start_at = out->len;
    int err = 0;
    if (!PyDict_CheckExact(record))
        return 0;
    /* the fields of the record, in one pass (what record.get(key) gives: NULL when missing) */
    PyObject *vals[K_COUNT] = {NULL};
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(record, &pos, &key, &value)) {
        int k = key_index(n, key);
        if (k == -2)
            return 0;
        if (k >= 0)
            vals[k] = value;
    }

    /* addresses */
    PyObject *src = vals[K_IP_SRC];
    PyObject *dst = vals[K_IP_DST];
    if (err || src == NULL || dst == NULL || !PyUnicode_CheckExact(src) || !PyUnicode_CheckExact(dst))
        return 0;
    long src_scope = scope_of(n, src);
    if (src_scope < 0)
        return 0;
    long dst_scope = scope_of(n, dst);
    if (dst_scope < 0)
        return 0;

    /* protocol */
    PyObject *proto_value = vals[K_IP_PROTO];
    if (proto_value == NULL && !err)
        proto_value = vals[K_PROTO];
    if (err || proto_value == NULL)       /* missing: "" -> BadRecord in Python */
        return 0;
    PyObject *protocol = protocol_of(n, proto_value);
    if (protocol == NULL)
        return 0;
    rec->protocol = protocol;
    if (classify(n, protocol, rec) < 0 || !writable(protocol))
        goto decline;

    /* ports and counts */
    long sport = port_of(vals[K_PORT_SRC]);
    long dport = port_of(vals[K_PORT_DST]);
    if (err || sport < -1 || dport < -1)
        goto decline;
    unsigned long long bytes, packets;
    if (count_of(vals[K_BYTES], &bytes) < 0 ||
        count_of(vals[K_PACKETS], &packets) < 0 || err)
        goto decline;
    if (packets <= ~0ULL / n->max_packet_bytes && bytes > packets * n->max_packet_bytes)
        goto decline;

    /* dialect */
    PyObject *peer = vals[K_PEER];
    PyObject *start_value = vals[K_TS_START];
    if (err)
        goto decline;
    int nfacctd = peer != NULL || start_value != NULL;
    int has_exporter = peer != NULL && PyUnicode_CheckExact(peer) && PyUnicode_GET_LENGTH(peer) > 0;
    if (peer != NULL && !PyUnicode_CheckExact(peer) && peer != Py_None)
        goto decline;           /* a str subclass or another type: left to Python */

    /* times */
    const char *start_text = NULL, *end_text = NULL;
    Py_ssize_t start_len = 0, end_len = 0;
    int timestamp_start = 1;
    int t = time_value(start_value, &start_text, &start_len);
    if (t < 0)
        goto decline;
    if (t == 0) {
        timestamp_start = 0;
        t = time_value(vals[K_STAMP_INSERTED], &start_text, &start_len);
        if (t == 0 && !err)
            t = time_value(vals[K_STAMP_UPDATED], &start_text, &start_len);
        if (t <= 0 || err)      /* no usable time: BadRecord */
            goto decline;
    }
    double start, end = 0.0, duration = 0.0;
    const char *duration_text = NULL;
    Py_ssize_t duration_len = 0;
    if (parse_time(n, start_text, start_len, &start) < 0)
        goto decline;
    int has_end = 0;
    if (timestamp_start) {
        t = time_value(vals[K_TS_END], &end_text, &end_len);
        if (t < 0 || err)
            goto decline;
        if (t > 0) {
            if (parse_time(n, end_text, end_len, &end) < 0 || end < start)
                goto decline;
            int d = duration_of(n, end - start, &duration, &duration_text, &duration_len);
            if (d < 0)
                goto fail;
            if (d > 0)
                goto decline;
            has_end = 1;
        }
    }

    /* TCP flags */
    long flags = 0;
    if (rec->is_tcp && !rec->is_icmp) {
        PyObject *value = vals[K_TCP_FLAGS];
        if (err)
            goto decline;
        if (value != NULL && value != Py_None) {
            if (PyUnicode_CheckExact(value)) {
                Py_ssize_t len;
                const char *s = PyUnicode_AsUTF8AndSize(value, &len);
                if (s == NULL) {
                    PyErr_Clear();
                    goto decline;
                }
                if (len < 1 || len > 4)
                    goto decline;
                for (Py_ssize_t i = 0; i < len; i++) {
                    if (!is_digit(s[i]))
                        goto decline;
                    flags = flags * 10 + (s[i] - '0');
                }
            } else if (exact_long(value, &flags) < 0) {
                goto decline;
            }
            if (flags < 0 || flags > 0xFFF)
                goto decline;
        }
    }

    /* the exporter's name, last as in Python (its cache is filled only for a good record) */
    if (has_exporter) {
        exporter = exporter_of(n, peer);
        if (exporter == NULL || !PyUnicode_CheckExact(exporter) || !writable(exporter))
            goto decline;
    }

    /* the event, as orjson.dumps(public_view(event)) writes it, up to "anomaly" */
    int direction = (src_scope != n->external ? 0 : 2) + (dst_scope != n->external ? 0 : 1);
    int icmp_fields = rec->is_icmp && (nfacctd || dport > 0);
    long code = dport > 0 ? dport : 0;
    const Service *service = NULL;
    if (!rec->is_icmp && dport >= 0 && rec->is_port_protocol)
        service = service_of(n, dport);
    /* one reservation for the whole event: every write below fits (strings at 6 bytes a byte) */
    Py_ssize_t src_len, dst_len, proto_len, exporter_len = 0;
    if (PyUnicode_AsUTF8AndSize(src, &src_len) == NULL || PyUnicode_AsUTF8AndSize(dst, &dst_len) == NULL ||
        PyUnicode_AsUTF8AndSize(protocol, &proto_len) == NULL ||
        (exporter != NULL && PyUnicode_AsUTF8AndSize(exporter, &exporter_len) == NULL)) {
        PyErr_Clear();
        goto decline;
    }
    Py_ssize_t need = 512 + start_len + end_len + duration_len + 6 * (src_len + dst_len + proto_len + exporter_len) +
                      n->direction_len[direction] + (service ? service->len : 0) + 16 * n->n_flags;
    if (ffbuf_reserve(out, need) < 0)
        goto fail;
    RAW("{\"netflow\":\"true\",\"event\":{\"start\":");
    raw_time(out, start_text, start_len);
    if (has_end) {
        RAW(",\"end\":");
        raw_time(out, end_text, end_len);
        RAW(",\"duration\":");
        raw(out, duration_text, duration_len);
    }
    RAW(",\"type\":\"connection\",\"category\":\"network\"},\"source\":{\"ip\":");
    if (ffbuf_json_str(out, src) < 0)
        goto fail;
    if (!rec->is_icmp && sport >= 0) {
        RAW(",\"port\":");
        raw_uint(out, (unsigned long long)sport);
    }
    RAW("},\"destination\":{\"ip\":");
    if (ffbuf_json_str(out, dst) < 0)
        goto fail;
    if (!rec->is_icmp && dport >= 0) {
        RAW(",\"port\":");
        raw_uint(out, (unsigned long long)dport);
    }
    RAW("},\"flow\":{\"protocol\":");
    if (ffbuf_json_str(out, protocol) < 0)
        goto fail;
    raw(out, n->directions[direction], n->direction_len[direction]);
    if (icmp_fields) {
        RAW(",\"icmp_type\":");
        raw_uint(out, (unsigned long long)(code >> 8));
        RAW(",\"icmp_code\":");
        raw_uint(out, (unsigned long long)(code & 0xFF));
    } else if (flags) {
        RAW(",\"tcp_flags\":\"");
        int first = 1;
        for (int i = 0; i < n->n_flags; i++) {
            if (!(flags & n->flag_bits[i]))
                continue;
            if (!first)
                RAW(",");
            raw(out, n->flag_names[i], n->flag_lens[i]);
            first = 0;
        }
        RAW("\"");
    }
    RAW("},\"network\":{\"bytes\":");
    raw_uint(out, bytes);
    RAW(",\"packets\":");
    raw_uint(out, packets);
    RAW("}");
    if (service != NULL)
        raw(out, service->fragment, service->len);
    if (exporter != NULL) {
        RAW(",\"observer\":{\"collector\":\"nfacctd\",\"exporter\":");
        if (ffbuf_json_str(out, exporter) < 0)
            goto fail;
        RAW("},");
        Py_CLEAR(exporter);
    } else if (nfacctd) {
        RAW(",\"observer\":{\"collector\":\"nfacctd\"},");
    } else {
        RAW(",\"observer\":{\"collector\":\"pmacctd\"},");
    }

    /* the private tuple */
    rec->ts = start;
    rec->flags = rec->is_icmp ? 0 : flags;
    rec->src_local = src_scope == n->local;
    rec->dst_local = dst_scope == n->local;
    rec->src_internal = src_scope != n->external;
    rec->res = timestamp_start ? 0.0 : 60.0;
    Py_INCREF(src);
    rec->src = src;
    Py_INCREF(dst);
    rec->dst = dst;
    rec->sport = rec->is_icmp ? -1 : sport;
    rec->dport = rec->is_icmp ? -1 : dport;
    rec->direction = direction;
    rec->packets = packets;
    rec->bytes = bytes;
    rec->has_duration = has_end;
    rec->duration = has_end ? duration : 0.0;
    rec->icmp_type = icmp_fields ? code >> 8 : -1;
    return 1;

decline:
    Py_XDECREF(exporter);
    ff_rec_clear(rec);
    memset(rec, 0, sizeof *rec);
    out->len = start_at;
    return 0;
fail:
    Py_XDECREF(exporter);
    ff_rec_clear(rec);
    memset(rec, 0, sizeof *rec);
    out->len = start_at;
    return -1;
}
