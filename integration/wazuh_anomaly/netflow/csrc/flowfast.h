/* The NetFlow normaliser's compiled fast path (module wazuh_anomaly.netflow.flowfast).
 *
 * It does for the common, well-formed pmacct record exactly what the Python code does
 * (normalize.Normalizer.normalize, detect.FlowDetector.observe, orjson.dumps of the
 * public event): same bytes out, same detection state, same counts. Anything it does not
 * know for certain (an unusual shape, a cache miss it cannot fill the same way, a bad
 * value) it declines, before changing anything, and the Python code handles that line.
 * The detection windows stay the Python objects of the FlowDetector (dicts and lists),
 * so the two paths share them and the state file is unchanged.
 */
#ifndef WAZUH_ANOMALY_FLOWFAST_H
#define WAZUH_ANOMALY_FLOWFAST_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* ---- a growable byte buffer (the output of one batch) ---- */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
} FFBuf;

int ffbuf_reserve(FFBuf *b, Py_ssize_t extra);          /* 0, or -1 with MemoryError set */
int ffbuf_put(FFBuf *b, const char *s, Py_ssize_t n);   /* raw bytes */
int ffbuf_puts(FFBuf *b, const char *s);                /* a C string, raw */
/* A JSON string of `text`, quoted and escaped exactly as orjson.dumps writes it
 * (only '"', '\\' and control characters below 0x20 escaped; UTF-8 as is). */
int ffbuf_json_str(FFBuf *b, PyObject *text);
int ffbuf_json_int(FFBuf *b, long long v);
int ffbuf_json_uint(FFBuf *b, unsigned long long v);
/* A float as orjson.dumps writes it (shortest repr; "0.5", "12.0"). */
int ffbuf_json_float(FFBuf *b, double v);

/* ---- one normalised flow: the Python event's private tuple (normalize.PRIVATE), in C ---- */
enum { FF_INT_INT = 0, FF_INT_EXT = 1, FF_EXT_INT = 2, FF_EXT_EXT = 3 };   /* normalize.DIRECTIONS */

typedef struct {
    double ts;                  /* epoch seconds of the start */
    long flags;                 /* TCP flag bits (0: none exported, or not TCP) */
    int src_local, dst_local;   /* normalize.LOCAL scope (multicast, link-local, ...) */
    int src_internal;           /* scope != EXTERNAL */
    double res;                 /* 0.0 exact times (nfacctd), 60.0 pmacctd bins */
    PyObject *src, *dst;        /* the address texts (new references, released by ff_rec_clear) */
    long sport, dport;          /* -1: None */
    PyObject *protocol;         /* the protocol name (new reference) */
    int is_tcp, is_icmp, is_port_protocol;   /* protocol == "tcp", in ICMP_PROTOCOLS, in PORT_PROTOCOLS */
    int direction;              /* FF_INT_INT ... FF_EXT_EXT */
    unsigned long long packets, bytes;
    int has_duration;
    double duration;            /* event.duration when has_duration */
    long icmp_type;             /* -1: None (not ICMP, or no type: pmacctd) */
} FFRec;

void ff_rec_clear(FFRec *r);   /* releases src, dst, protocol; safe on a zeroed FFRec */

/* ---- the normaliser (csrc/normalize.c) ---- */
typedef struct FFNormalizer FFNormalizer;

/* Reads what it needs from a normalize.Normalizer (its settings, its caches: the same
 * dict objects, so both paths fill and read one cache). NULL with an exception set. */
FFNormalizer *ffn_new(PyObject *normalizer);
void ffn_free(FFNormalizer *n);
/* `record`: what orjson.loads gave for the line. Returns 1 when normalised: `rec` filled
 * and the event's JSON written to `out` from its opening '{' up to and including the comma
 * before "anomaly" (that is: {"netflow":"true","event":{...},...,"observer":{...},);
 * 0 when the fast path declines (nothing written, `rec` zeroed, no exception: the caller
 * runs the Python normaliser on it, which gives the same event or the BadRecord reason);
 * -1 with an exception set on a real failure (memory). */
int ffn_normalize(FFNormalizer *n, PyObject *record, FFRec *rec, FFBuf *out);

/* ---- the detector (csrc/detect.c) ---- */
typedef struct FFDetector FFDetector;

/* Tag bits, in the order FlowDetector.observe appends the tags (detect.TAGS is not in
 * that order): the tags are written in increasing bit order. */
enum {
    FF_TAG_PORT_SCAN = 1 << 0,      /* possible_port_scan */
    FF_TAG_OUTBOUND = 1 << 1,       /* high_outbound_bytes */
    FF_TAG_BEACONING = 1 << 2,      /* possible_beaconing */
    FF_TAG_LATERAL = 1 << 3,        /* possible_lateral_movement */
    FF_TAG_DNS = 1 << 4,            /* suspicious_dns_flow */
    FF_TAG_INBOUND = 1 << 5,        /* external_inbound_sensitive_service */
    FF_TAG_UNUSUAL = 1 << 6,        /* unusual_outbound_port */
    FF_TAG_DOS = 1 << 7,            /* possible_dos */
    FF_TAG_BRUTE = 1 << 8,          /* possible_brute_force */
};
#define FF_TAG_COUNT 9

typedef struct {
    unsigned tags;          /* FF_TAG_* bits */
    long long repeat;       /* anomaly.port_scan.repeat, -1 when absent */
    int escalated;          /* anomaly.escalated = "true" */
} FFTags;

/* Works on the windows of a detect.FlowDetector (the same dict and list objects, so a
 * flow the Python path observes and one the C path observes update one state). NULL
 * with an exception set. */
FFDetector *ffd_new(PyObject *detector);
void ffd_free(FFDetector *d);
/* Exactly FlowDetector.observe(event) for the event `rec` describes. 0, or -1 with an
 * exception set (the caller stops: the state may be half-updated, as in Python). */
int ffd_observe(FFDetector *d, const FFRec *rec, FFTags *out);
/* 1 when this file's code observes the detector's flows itself, 0 when it hands each
 * one to FlowDetector.observe (settings or windows it does not mirror). */
int ffd_mirrored(const FFDetector *d);

#endif
