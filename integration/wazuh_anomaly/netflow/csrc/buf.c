/* FFBuf and the JSON writers of csrc/flowfast.h: byte-identical to orjson.dumps. */
#include "flowfast.h"
#include <string.h>

int ffbuf_reserve(FFBuf *b, Py_ssize_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

int ffbuf_put(FFBuf *b, const char *s, Py_ssize_t n)
{
    if (ffbuf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

int ffbuf_puts(FFBuf *b, const char *s)
{
    return ffbuf_put(b, s, (Py_ssize_t)strlen(s));
}

int ffbuf_json_str(FFBuf *b, PyObject *text)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL)
        return -1;
    if (ffbuf_reserve(b, n * 6 + 2) < 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default: {
            static const char hex[] = "0123456789abcdef";
            *o++ = 'u'; *o++ = '0'; *o++ = '0';
            *o++ = hex[c >> 4]; *o++ = hex[c & 15];
        }
        }
    }
    *o++ = '"';
    b->len = o - b->data;
    return 0;
}

int ffbuf_json_uint(FFBuf *b, unsigned long long v)
{
    char tmp[24];
    int i = 24;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return ffbuf_put(b, tmp + i, 24 - i);
}

int ffbuf_json_int(FFBuf *b, long long v)
{
    if (v < 0) {
        if (ffbuf_put(b, "-", 1) < 0)
            return -1;
        return ffbuf_json_uint(b, (unsigned long long)(-(v + 1)) + 1);
    }
    return ffbuf_json_uint(b, (unsigned long long)v);
}

int ffbuf_json_float(FFBuf *b, double v)
{
    /* Python's repr: the shortest text that reads back as v, as orjson writes it for the
     * finite values a flow event holds (durations: 0 to 1e11, never in exponent form). */
    char *text = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL)
        return -1;
    int rc = ffbuf_puts(b, text);
    PyMem_Free(text);
    return rc;
}

void ff_rec_clear(FFRec *r)
{
    Py_CLEAR(r->src);
    Py_CLEAR(r->dst);
    Py_CLEAR(r->protocol);
}
