/*
 * The incremental snapshot encoder's two hot loops
 * (libp2p_introspection.introspector.encoder), in C: an optional accelerator.
 * The Python encoder stays the reference and the fallback; both work on the
 * same objects (the registry's records, the encoder's _StreamCode and
 * _ConnectionCode), so either may encode any snapshot.
 *
 * Each loop only handles the common case (a stream whose counters moved and
 * nothing else; a connection whose own fields did not change) and gives
 * every other object back to the Python code, before changing anything of
 * it: a value of an unexpected type, a number that does not fit 63 bits, a
 * negative counter, a tag that is not a plain str, a stream that ended or is
 * negotiating, a connection whose status, close time or tags changed.
 *
 * The counters live in C, inline: a TrafficCounter is a Counter (the six
 * int64 counts, which the counting wrappers bump), and the encoder's
 * _StreamCode/_ConnectionCode are Codes (the counts they were encoded with,
 * the slot, whether hot): both loops read and write them without a Python
 * int in between, so a stream's pass touches a few objects instead of about
 * twenty. The other fields are read through their __slots__ (the member
 * descriptors' offsets, taken once by configure() and used only on objects
 * of exactly the configured types). No Python code runs inside the loops except the
 * callbacks connection_pass() is given, and every value read is read again
 * after them. Every buffer is sized before it is written: a varint takes at
 * most 10 bytes, a gauge at most 2 + 3 * 11, a Traffic field at most 72.
 *
 * Counter, Code: the base types (see above; their fields are int64 members:
 *     a value that does not fit is refused with OverflowError, a value that is
 *     not an int with TypeError).
 * configure(StreamRecord, ConnectionRecord, TrafficCounter, _StreamCode,
 *           _ConnectionCode, active_status) -> None
 *     TrafficCounter must be a subclass of Counter adding no field, the codes
 *     subclasses of Code.
 * stream_pass(streams, window_ms, rebuild, dirty, hot) -> list
 *     encode_streams' loop; returns the streams the Python code must do.
 * FNV1A32_BLOCKED: how the FNV-1a runs here: 0 byte by byte, 1 a block's bit planes in
 *     scalar registers (AVX-512BW, PCLMUL), 2 eight blocks' in a vector (and VPCLMULQDQ).
 * fnv1a32(pieces, h=0x811c9dc5) -> int
 *     FNV-1a 32 of the concatenation of ``pieces`` (a list of bytes), from the
 *     state ``h`` (the offset basis, or what an earlier call returned: a long
 *     input can be hashed a few pieces at a time), without joining them.
 * frame(pieces, version) -> bytes
 *     The live frame (framing.encode_frame) of the message the pieces (a list of bytes)
 *     make: the 12-byte header (version, FNV-1a 32 of the message, its size, little
 *     endian) then the pieces, in one copy, hashed from the copy. ValueError when the
 *     message passes 2**32 - 1 bytes or the version 32 bits.
 * connection_pass(records, window_ms, rebuild, dirty, totals, peer_field,
 *                 latency, slow) -> list of bytes
 *     encode's loop: each record's Subsystems.connections field. For a record
 *     it does not handle it calls slow(record, peer), peer being None when
 *     latency(conn) or peer_field(peer_id) raised; slow returns the bytes,
 *     or None to skip the record. With ``start`` and ``budget_ns`` (both
 *     optional): from records[start], and, when budget_ns > 0, it stops once it
 *     has worked that long (looking at the clock every 4 records) and returns
 *     (the fields, the index of the first record it did not do). peer_field may instead be a dict (exactly)
 *     of peer id -> field bytes, looked up without a call (a peer id missing
 *     from it: b""; a peer id that is not a plain str, or a value that is not
 *     bytes: slow(record, None)). The totals' deltas are added once, at the
 *     end of the pass (also when it fails half-way).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define MAX_SLOTS 16
#define VARINT_MAX 10
#define GAUGE_MAX (2 + 3 * (1 + VARINT_MAX))
#define TRAFFIC_MAX (2 + 2 * GAUGE_MAX)

typedef struct {
    PyTypeObject *type;
    Py_ssize_t off[MAX_SLOTS];
} layout_t;

enum { S_CONN, S_CODE, S_TRAFFIC, S_PROTOCOL, S_STATUS, S_CLOSE_TS, S_TAGS, S_LIVE, S_N };
static const char *s_names[S_N] = {"conn",     "code", "traffic", "protocol",
                                   "status",   "close_ts", "tags", "live"};
enum { R_CODE, R_CONN, R_PEER_ID, R_TRAFFIC, R_STATUS, R_CLOSE_TS, R_LATENCY, R_TAGS, R_N };
static const char *r_names[R_N] = {"code",   "conn",     "peer_id",    "traffic",
                                   "status", "close_ts", "latency_ns", "tags"};
enum { T_IN_B, T_IN_P, T_OUT_B, T_OUT_P, T_PREV_IN, T_PREV_OUT, T_N };
enum {
    SC_PROTOCOL, SC_STATUS, SC_CLOSE_TS, SC_TAGS, SC_PREFIX, SC_SUFFIX, SC_TRAFFIC,
    SC_TAGGED, SC_N
};
static const char *sc_names[SC_N] = {"protocol", "status", "close_ts", "tags", "prefix",
                                     "suffix", "traffic", "tagged"};
enum {
    CC_STATUS, CC_CLOSE_TS, CC_LATENCY, CC_TAGS, CC_PEER, CC_PARTS, CC_TAGGED, CC_N
};
static const char *cc_names[CC_N] = {"status", "close_ts", "latency", "tags", "peer", "parts",
                                     "tagged"};

/* A TrafficCounter's counts (traffic.py: in, then out; prev_*: the bytes at the last
 * snapshot), in the order of T_*, and the chunk observer of a stream's reader. */
typedef struct {
    PyObject_HEAD
    int64_t t[T_N];
    PyObject *observer;
} CounterObject;

/* The counts a stream or connection was last encoded with (in/out bytes/packets), its
 * place in its connection's list of encodings (streams) and whether it is hot. */
typedef struct {
    PyObject_HEAD
    int64_t c[4];
    int64_t slot;
    char hot;
} CodeObject;

static PyTypeObject Counter_Type, Code_Type;

static layout_t L_s, L_r, L_t, L_sc, L_cc;
static int configured = 0;
static long long active_status = 0;

/* Where each field sits in a connection's list of encodings (encoder._ConnectionCode). */
enum { P_TAG, P_HEAD, P_TRAFFIC, P_ATTRIBS, P_LATENCY, P_STREAMS, P_IDS, P_FIRST_STREAM };
#define P_MIN (P_FIRST_STREAM + 2) /* then the tags and the peer */

static inline PyObject *get(PyObject *obj, const layout_t *l, int i)
{
    return *(PyObject **)((char *)obj + l->off[i]); /* borrowed, NULL when unset */
}

/* Store a new reference (stolen) in a slot. */
static inline void put(PyObject *obj, const layout_t *l, int i, PyObject *value)
{
    PyObject **at = (PyObject **)((char *)obj + l->off[i]);
    PyObject *old = *at;
    *at = value;
    Py_XDECREF(old);
}

static inline void put_ref(PyObject *obj, const layout_t *l, int i, PyObject *value)
{
    Py_INCREF(value);
    put(obj, l, i, value);
}

/* 0 and the value when ``v`` is an exact int that fits int64, else -1 (no error set). */
static int i64(PyObject *v, int64_t *out)
{
    int overflow = 0;
    long long x;
    if (v == NULL || !PyLong_CheckExact(v))
        return -1;
    x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow)
        return -1;
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    *out = (int64_t)x;
    return 0;
}

static Py_ssize_t put_varint(unsigned char *p, uint64_t v)
{
    Py_ssize_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n; /* at most 10 */
}

static Py_ssize_t varint_len(uint64_t v)
{
    Py_ssize_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* A DataGauge field (tag, length, body); at most GAUGE_MAX bytes. */
static Py_ssize_t put_gauge(unsigned char *p, unsigned char tag, uint64_t cum_bytes,
                            uint64_t cum_packets, uint64_t bw)
{
    Py_ssize_t n = 2;
    if (cum_bytes) {
        p[n++] = 0x08;
        n += put_varint(p + n, cum_bytes);
    }
    if (cum_packets) {
        p[n++] = 0x10;
        n += put_varint(p + n, cum_packets);
    }
    if (bw) {
        p[n++] = 0x18;
        n += put_varint(p + n, bw);
    }
    p[0] = tag;
    p[1] = (unsigned char)(n - 2); /* at most 33: one byte */
    return n;
}

/* A Traffic field (``field_tag``, length, both gauges); at most TRAFFIC_MAX bytes. */
static Py_ssize_t put_traffic(unsigned char *p, unsigned char field_tag, const int64_t *t,
                              int64_t bw_in, int64_t bw_out)
{
    Py_ssize_t n = 2;
    n += put_gauge(p + n, 0x0a, (uint64_t)t[T_IN_B], (uint64_t)t[T_IN_P], (uint64_t)bw_in);
    n += put_gauge(p + n, 0x12, (uint64_t)t[T_OUT_B], (uint64_t)t[T_OUT_P], (uint64_t)bw_out);
    p[0] = field_tag;
    p[1] = (unsigned char)(n - 2); /* at most 70: one byte */
    return n;
}

/* A tag byte and a varint, as a new bytes object. */
static PyObject *tagged_varint(unsigned char tag, uint64_t v)
{
    unsigned char buf[1 + VARINT_MAX];
    buf[0] = tag;
    return PyBytes_FromStringAndSize((const char *)buf, 1 + put_varint(buf + 1, v));
}

/* tagged_varint(), or ``old`` itself (a new reference) when it holds those bytes already:
 * most connections' stream-list header and own tag do not change between snapshots. */
static PyObject *tagged_varint_as(unsigned char tag, uint64_t v, PyObject *old)
{
    unsigned char buf[1 + VARINT_MAX];
    Py_ssize_t n;
    buf[0] = tag;
    n = 1 + put_varint(buf + 1, v);
    if (old != NULL && PyBytes_CheckExact(old) && PyBytes_GET_SIZE(old) == n &&
        memcmp(PyBytes_AS_STRING(old), buf, (size_t)n) == 0) {
        Py_INCREF(old);
        return old;
    }
    return PyBytes_FromStringAndSize((const char *)buf, n);
}

/* Whether a record's tags (a list) and the tags it was encoded with (a tuple) hold the
 * same plain str: 1, 0, or -1 "not plain" (ask Python). */
static int same_tags(PyObject *a, PyObject *b)
{
    Py_ssize_t n, i;
    PyObject **x, **y;
    if (a == NULL || b == NULL || !PyList_CheckExact(a) || !PyTuple_CheckExact(b))
        return -1;
    n = PyList_GET_SIZE(a);
    x = ((PyListObject *)a)->ob_item;
    y = ((PyTupleObject *)b)->ob_item;
    for (i = 0; i < n; i++)
        if (!PyUnicode_CheckExact(x[i]))
            return -1;
    for (i = 0; i < PyTuple_GET_SIZE(b); i++)
        if (!PyUnicode_CheckExact(y[i]))
            return -1;
    if (PyTuple_GET_SIZE(b) != n)
        return 0;
    for (i = 0; i < n; i++)
        if (x[i] != y[i] && PyUnicode_Compare(x[i], y[i]) != 0)
            return 0;
    return 1;
}

/* The bandwidths of a window (TrafficCounter.to_pb); -1 if a product would overflow. */
static int bandwidths(const int64_t *t, int64_t window, int64_t *bw_in, int64_t *bw_out,
                      int64_t *prev_in, int64_t *prev_out)
{
    *bw_in = *bw_out = 0;
    *prev_in = t[T_PREV_IN];
    *prev_out = t[T_PREV_OUT];
    if (window > 0) {
        if (t[T_IN_B] > *prev_in) {
            int64_t d = t[T_IN_B] - *prev_in; /* both >= 0: no overflow */
            if (d > INT64_MAX / 1000)
                return -1;
            *bw_in = d * 1000 / window;
        }
        if (t[T_OUT_B] > *prev_out) {
            int64_t d = t[T_OUT_B] - *prev_out;
            if (d > INT64_MAX / 1000)
                return -1;
            *bw_out = d * 1000 / window;
        }
        *prev_in = t[T_IN_B];
        *prev_out = t[T_OUT_B];
    }
    return 0;
}

/* A counter's counts, when it is a configured counter holding no negative count. */
static int read_counters(PyObject *traffic, int64_t *t)
{
    int k;
    if (traffic == NULL || Py_TYPE(traffic) != L_t.type)
        return -1;
    memcpy(t, ((CounterObject *)traffic)->t, sizeof ((CounterObject *)traffic)->t);
    for (k = 0; k < T_N; k++)
        if (t[k] < 0)
            return -1;
    return 0;
}

/* ----------------------------------------------------------------- configure */

static int take_layout(layout_t *into, PyObject *type, const char **names, int n)
{
    layout_t l[1];
    int i;
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "configure() expects types");
        return -1;
    }
    for (i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttrString(type, names[i]);
        PyMemberDef *m;
        if (d == NULL)
            return -1;
        if (!Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            Py_DECREF(d);
            PyErr_Format(PyExc_TypeError, "%s is not a __slots__ member", names[i]);
            return -1;
        }
        m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY) || m->offset <= 0 ||
            (size_t)m->offset + sizeof(PyObject *) > (size_t)((PyTypeObject *)type)->tp_basicsize) {
            Py_DECREF(d);
            PyErr_Format(PyExc_TypeError, "%s is not a writable object slot", names[i]);
            return -1;
        }
        l->off[i] = m->offset;
        Py_DECREF(d);
    }
    Py_INCREF(type);
    l->type = (PyTypeObject *)type;
    Py_XDECREF(into->type);
    *into = *l; /* whole, or not at all */
    return 0;
}

static int subtype_of(PyObject *type, PyTypeObject *base)
{
    if (!PyType_Check(type) || !PyType_IsSubtype((PyTypeObject *)type, base)) {
        PyErr_Format(PyExc_TypeError, "configure() expects a subclass of %s", base->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *configure(PyObject *self, PyObject *args)
{
    PyObject *s, *r, *t, *sc, *cc;
    long long active;
    if (!PyArg_ParseTuple(args, "OOOOOL", &s, &r, &t, &sc, &cc, &active))
        return NULL;
    configured = 0;
    if (subtype_of(t, &Counter_Type) < 0 || subtype_of(sc, &Code_Type) < 0 ||
        subtype_of(cc, &Code_Type) < 0)
        return NULL;
    if (take_layout(&L_s, s, s_names, S_N) < 0 || take_layout(&L_r, r, r_names, R_N) < 0 ||
        take_layout(&L_t, t, NULL, 0) < 0 || take_layout(&L_sc, sc, sc_names, SC_N) < 0 ||
        take_layout(&L_cc, cc, cc_names, CC_N) < 0)
        return NULL;
    active_status = active;
    configured = 1;
    Py_RETURN_NONE;
}

/* --------------------------------------------------------------- stream pass */

/* The protocols' live sums (ProtocolTracker.live_sums: lists shared by the streams of
 * one protocol) a pass moved: the deltas are added once, at the end of the pass. */
#define MAX_SUMS 16
typedef struct {
    PyObject *list; /* a strong reference */
    int64_t delta[4];
} sums_t;

typedef struct {
    sums_t sums[MAX_SUMS];
    int n;
    /* The record last added to ``dirty`` (a strong reference, so that its address is not
     * taken by another record if a probe's Python code removed it): the streams of one
     * connection often come one after the other, and adding it again is a no-op. */
    PyObject *last_dirty;
} pass_t;

/* The slot of ``list`` in the pass's table, or -1 when the table is full. */
static int sums_slot(pass_t *pass, PyObject *list)
{
    int i;
    for (i = 0; i < pass->n; i++)
        if (pass->sums[i].list == list)
            return i;
    if (pass->n == MAX_SUMS)
        return -1;
    Py_INCREF(list);
    pass->sums[pass->n].list = list;
    memset(pass->sums[pass->n].delta, 0, sizeof pass->sums[pass->n].delta);
    return pass->n++;
}

/* Add the deltas to the lists (Python ints: no overflow); -1 on a memory error. */
static int sums_flush(pass_t *pass)
{
    int i, k, r = 0;
    for (i = 0; i < pass->n; i++) {
        PyObject *list = pass->sums[i].list;
        for (k = 0; k < 4 && r == 0; k++) {
            PyObject *delta, *sum;
            if (pass->sums[i].delta[k] == 0)
                continue;
            if (PyList_GET_SIZE(list) <= k) /* never: the lists keep their five sums */
                break;
            delta = PyLong_FromLongLong(pass->sums[i].delta[k]);
            sum = delta ? PyNumber_Add(PyList_GET_ITEM(list, k), delta) : NULL;
            Py_XDECREF(delta);
            if (sum == NULL)
                r = -1;
            else
                PyList_SetItem(list, k, sum);
        }
        Py_DECREF(list);
    }
    pass->n = 0;
    return r;
}

/* Load what stream_one will read of a stream ahead of time (the loop is bound by
 * memory): ``depth`` 0 the record, 1 the objects its slots hold, 2 theirs. Only
 * objects of the configured types are looked into. */
static inline void prefetch_stream(PyObject *stream, int depth)
{
    PyObject *sc, *traffic, *record;
    if (depth == 0) {
        __builtin_prefetch(stream);
        __builtin_prefetch((char *)stream + 64);
        __builtin_prefetch((char *)stream + 128);
        return;
    }
    if (Py_TYPE(stream) != L_s.type)
        return;
    sc = get(stream, &L_s, S_CODE);
    traffic = get(stream, &L_s, S_TRAFFIC);
    record = get(stream, &L_s, S_CONN);
    if (depth == 1) {
        if (sc != NULL) {
            __builtin_prefetch(sc);
            __builtin_prefetch((char *)sc + 64);
        }
        if (traffic != NULL)
            __builtin_prefetch(traffic);
        if (record != NULL)
            __builtin_prefetch((char *)record + L_r.off[R_CODE]);
        __builtin_prefetch(get(stream, &L_s, S_TAGS));
        return;
    }
    if (sc != NULL && Py_TYPE(sc) == L_sc.type) {
        __builtin_prefetch(get(sc, &L_sc, SC_PREFIX));
        __builtin_prefetch(get(sc, &L_sc, SC_SUFFIX));
        __builtin_prefetch(get(sc, &L_sc, SC_TRAFFIC));
        __builtin_prefetch(get(sc, &L_sc, SC_TAGGED));
    }
    if (record != NULL && Py_TYPE(record) == L_r.type) {
        PyObject *code = get(record, &L_r, R_CODE);
        if (code != NULL && Py_TYPE(code) == L_cc.type) {
            __builtin_prefetch((char *)code + L_cc.off[CC_PARTS]);
            __builtin_prefetch(get(code, &L_cc, CC_PARTS));
        }
    }
}

/* Where a stream's Traffic field (field 4) sits in its kept bytes (``tagged``: tag 0x12,
 * the body's length, then the body: the fields before it (id, protocol, role), the
 * traffic, the fields after it): 0 and the body's start, the field's start and end, or -1
 * when the bytes are not laid out so (the Python code does the stream). */
static int find_traffic(PyObject *tagged, Py_ssize_t *body_at, Py_ssize_t *at, Py_ssize_t *end)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(tagged);
    Py_ssize_t n = PyBytes_GET_SIZE(tagged), i = 1, shift;
    uint64_t len = 0;
    if (n < 2 || p[0] != 0x12)
        return -1;
    for (shift = 0; i < n && shift < 63; shift += 7) { /* the body's length */
        len |= (uint64_t)(p[i] & 0x7F) << shift;
        if (!(p[i++] & 0x80))
            break;
    }
    if (i >= n || p[i - 1] & 0x80 || len != (uint64_t)(n - i))
        return -1;
    *body_at = i;
    while (i < n) {
        unsigned char tag = p[i];
        if (tag == 0x22) { /* the Traffic: two gauges, at most 70 bytes (one length byte) */
            if (i + 1 >= n || p[i + 1] & 0x80 || i + 2 + p[i + 1] > n)
                return -1;
            *at = i;
            *end = i + 2 + p[i + 1];
            return 0;
        }
        if (tag >> 3 < 1 || tag >> 3 > 3 || tag & 0x80) /* only id, protocol, role before it */
            return -1;
        i++;
        if ((tag & 7) == 0) { /* a varint */
            while (i < n && p[i] & 0x80)
                i++;
            i++;
        } else if ((tag & 7) == 2) { /* length-delimited */
            uint64_t l = 0;
            for (shift = 0; i < n && shift < 63; shift += 7) {
                l |= (uint64_t)(p[i] & 0x7F) << shift;
                if (!(p[i++] & 0x80))
                    break;
            }
            if (i > n || p[i - 1] & 0x80 || l > (uint64_t)(n - i))
                return -1;
            i += (Py_ssize_t)l;
        } else {
            return -1;
        }
    }
    return -1;
}

static int stream_encode(PyObject *stream, PyObject *record, PyObject *code, PyObject *sc,
                         int64_t window, PyObject *dirty, PyObject *hot_set, pass_t *pass);

/* 0 done (or nothing to do), 1 ask Python, -1 error (nothing changed).
 *
 * A set probe (rebuild, dirty, hot) runs Python code when the set holds a key whose hash
 * collides with the record's or the stream's and whose __eq__ is Python: anything the
 * probe's caller borrowed may be gone after it. So the record and the codes are held
 * across it, and what the Python code could have changed is read again after it. */
static int stream_one(PyObject *stream, int64_t window, PyObject *rebuild, PyObject *dirty,
                      PyObject *hot_set, pass_t *pass)
{
    PyObject *record, *code, *sc;
    int in_rebuild, r;

    if (Py_TYPE(stream) != L_s.type)
        return 1;
    record = get(stream, &L_s, S_CONN);
    sc = get(stream, &L_s, S_CODE);
    if (record == NULL || sc == NULL || Py_TYPE(record) != L_r.type)
        return 1;
    code = get(record, &L_r, R_CODE);
    if (code == NULL)
        return 1;
    if (code == Py_None || sc == Py_None)
        return 0; /* new, or dropped: its connection is encoded whole */
    if (Py_TYPE(code) != L_cc.type || Py_TYPE(sc) != L_sc.type)
        return 1;
    if (((CodeObject *)sc)->slot < 0)
        return 0;
    Py_INCREF(record);
    Py_INCREF(code);
    Py_INCREF(sc);
    in_rebuild = PySet_GET_SIZE(rebuild) ? PySet_Contains(rebuild, record) : 0;
    if (in_rebuild < 0)
        r = -1;
    else if (in_rebuild)
        r = 0;
    else if (get(stream, &L_s, S_CONN) != record || get(stream, &L_s, S_CODE) != sc ||
             get(record, &L_r, R_CODE) != code)
        r = 1; /* the probe's Python code moved them: the Python code does the stream */
    else
        r = stream_encode(stream, record, code, sc, window, dirty, hot_set, pass);
    Py_DECREF(sc);
    Py_DECREF(code);
    Py_DECREF(record);
    return r;
}

/* stream_one's work once the record is known not to be rebuilt (``record``, ``code`` and
 * ``sc`` held by the caller). */
static int stream_encode(PyObject *stream, PyObject *record, PyObject *code, PyObject *sc,
                         int64_t window, PyObject *dirty, PyObject *hot_set, pass_t *pass)
{
    PyObject *protocol, *scp, *old, *empty;
    PyObject *parts, *live, *traffic;
    PyObject *tagged = NULL;
    CodeObject *scc;
    CounterObject *tr;
    int64_t slot, status, sc_status, close_ts, sc_close_ts, t[T_N], live_v[4];
    int sums_at = -1;
    int64_t bw_in, bw_out, prev_in, prev_out;
    int new_hot, k, tags_same;
    unsigned char buf[TRAFFIC_MAX];
    Py_ssize_t traffic_len, lp, ls, body, total, vlen, body_at, at, end;
    const char *o;
    char *w;

    scc = (CodeObject *)sc;
    slot = scc->slot; /* read again: the probe may have run Python code */
    if (slot < 0)
        return 0;

    /* Its own fields: any change, and the Python code does it. */
    protocol = get(stream, &L_s, S_PROTOCOL);
    scp = get(sc, &L_sc, SC_PROTOCOL);
    if (protocol == NULL || !PyUnicode_CheckExact(protocol) || PyUnicode_GET_LENGTH(protocol) == 0)
        return 1;
    if (scp == NULL || !PyUnicode_CheckExact(scp))
        return 1;
    if (protocol != scp && PyUnicode_Compare(protocol, scp) != 0)
        return 1;
    if (i64(get(stream, &L_s, S_STATUS), &status) < 0 ||
        i64(get(sc, &L_sc, SC_STATUS), &sc_status) < 0 || status != sc_status ||
        status != active_status)
        return 1;
    if (i64(get(stream, &L_s, S_CLOSE_TS), &close_ts) < 0 ||
        i64(get(sc, &L_sc, SC_CLOSE_TS), &sc_close_ts) < 0 || close_ts != sc_close_ts)
        return 1;
    tags_same = same_tags(get(stream, &L_s, S_TAGS), get(sc, &L_sc, SC_TAGS));
    if (tags_same != 1)
        return 1;

    traffic = get(stream, &L_s, S_TRAFFIC);
    if (read_counters(traffic, t) < 0)
        return 1;
    tr = (CounterObject *)traffic;
    for (k = 0; k < 4; k++)
        if (scc->c[k] < 0)
            return 1;
    /* An encoded stream (slot >= 0) has its bytes: not moved, not hot, they stand. */
    if (!scc->hot && (uint64_t)t[T_IN_P] + (uint64_t)t[T_OUT_P] ==
                         (uint64_t)scc->c[1] + (uint64_t)scc->c[3])
        return 0;

    if (bandwidths(t, window, &bw_in, &bw_out, &prev_in, &prev_out) < 0)
        return 1;
    new_hot = bw_in || bw_out || t[T_IN_B] != prev_in || t[T_OUT_B] != prev_out;
    live = get(stream, &L_s, S_LIVE);
    if (live == NULL)
        return 1;
    if (live != Py_None) {
        if (!PyList_CheckExact(live) || PyList_GET_SIZE(live) < 4)
            return 1;
        sums_at = sums_slot(pass, live);
        if (sums_at < 0)
            return 1;
        for (k = 0; k < 4; k++) /* both >= 0: the difference does not overflow */
            if (__builtin_add_overflow(pass->sums[sums_at].delta[k], t[k] - scc->c[k],
                                       &live_v[k]))
                return 1;
    }
    parts = get(code, &L_cc, CC_PARTS);
    if (parts == NULL || !PyList_CheckExact(parts) || slot >= PyList_GET_SIZE(parts))
        return 1;
    /* The new bytes are the kept ones with the Traffic field replaced (the fields around
     * it are sc.prefix and sc.suffix, which made them). What they replace is bytes too:
     * dropping it runs no Python code. */
    old = get(sc, &L_sc, SC_TAGGED);
    if (old == NULL || !PyBytes_CheckExact(old) || !PyBytes_CheckExact(PyList_GET_ITEM(parts, slot)) ||
        PyBytes_GET_SIZE(old) > PY_SSIZE_T_MAX / 4 || find_traffic(old, &body_at, &at, &end) < 0)
        return 1;
    {
        PyObject *kept = get(sc, &L_sc, SC_TRAFFIC);
        if (kept == NULL || !PyBytes_CheckExact(kept))
            return 1;
    }
    traffic_len = put_traffic(buf, 0x22, t, bw_in, bw_out);
    lp = at - body_at;
    ls = PyBytes_GET_SIZE(old) - end;
    body = lp + traffic_len + ls;
    vlen = varint_len((uint64_t)body);
    total = 1 + vlen + body;

    /* Everything is known: make the new bytes, then change the state. */
    empty = PyBytes_FromStringAndSize(NULL, 0);
    tagged = empty == NULL ? NULL : PyBytes_FromStringAndSize(NULL, total);
    if (tagged == NULL)
        goto error;
    o = PyBytes_AS_STRING(old);
    w = PyBytes_AS_STRING(tagged);
    *w++ = 0x12;
    w += put_varint((unsigned char *)w, (uint64_t)body);
    memcpy(w, o + body_at, lp);
    w += lp;
    memcpy(w, buf, traffic_len);
    w += traffic_len;
    memcpy(w, o + end, ls);
    /* The probes may run Python code (see stream_one): what the state change touches is
     * held across them and must still be what was read. */
    Py_INCREF(traffic);
    Py_INCREF(parts);
    if (record != pass->last_dirty) {
        if (PySet_Add(dirty, record) < 0)
            goto error_held; /* a connection joined again: harmless */
        Py_INCREF(record);
        Py_XSETREF(pass->last_dirty, record);
    }
    if (new_hot && PySet_Add(hot_set, stream) < 0)
        goto error_held; /* a stream looked at again: harmless */
    if (get(stream, &L_s, S_TRAFFIC) != traffic || get(sc, &L_sc, SC_TAGGED) != old ||
        get(code, &L_cc, CC_PARTS) != parts || scc->slot != slot ||
        slot >= PyList_GET_SIZE(parts) || !PyBytes_CheckExact(PyList_GET_ITEM(parts, slot)) ||
        get(sc, &L_sc, SC_TRAFFIC) == NULL || !PyBytes_CheckExact(get(sc, &L_sc, SC_TRAFFIC)) ||
        get(stream, &L_s, S_LIVE) != live) {
        Py_DECREF(parts);
        Py_DECREF(traffic);
        Py_DECREF(empty);
        Py_DECREF(tagged);
        return 1; /* changed under us: the Python code does the stream (joined again) */
    }

    if (window > 0) {
        tr->t[T_PREV_IN] = t[T_IN_B];
        tr->t[T_PREV_OUT] = t[T_OUT_B];
    }
    /* Its Traffic is now only in its bytes: b"" tells the Python code to encode it again
     * (the same bytes: not hot, with the same counts, the bandwidth is 0 either way). */
    put(sc, &L_sc, SC_TRAFFIC, empty);
    scc->hot = (char)new_hot;
    if (sums_at >= 0)
        memcpy(pass->sums[sums_at].delta, live_v, sizeof live_v);
    memcpy(scc->c, t, sizeof scc->c); /* in/out bytes/packets: T_IN_B..T_OUT_P */
    put_ref(sc, &L_sc, SC_TAGGED, tagged);
    PyList_SetItem(parts, slot, tagged); /* steals: tagged now held by sc and parts */
    Py_DECREF(parts);
    Py_DECREF(traffic);
    return 0;

error_held:
    Py_DECREF(parts);
    Py_DECREF(traffic);
error:
    Py_XDECREF(empty);
    Py_XDECREF(tagged);
    return -1;
}

/* The records or streams a pass walks: the list itself (walked by index, its length read
 * again at every step, since Python code run by a callback or a set probe may change it;
 * each item held while it is worked on), or any other iterable copied into a tuple. */
#define SEQ_SIZE(s) (PyList_CheckExact(s) ? PyList_GET_SIZE(s) : PyTuple_GET_SIZE(s))
#define SEQ_ITEM(s, i) (PyList_CheckExact(s) ? PyList_GET_ITEM(s, i) : PyTuple_GET_ITEM(s, i))

static PyObject *as_sequence(PyObject *items)
{
    if (PyList_CheckExact(items)) {
        Py_INCREF(items);
        return items;
    }
    return PySequence_Tuple(items);
}

static PyObject *stream_pass(PyObject *self, PyObject *args)
{
    PyObject *streams, *rebuild, *dirty, *hot, *items, *slow;
    long long window;
    Py_ssize_t i, n;
    pass_t pass;
    pass.n = 0;
    pass.last_dirty = NULL;
    if (!PyArg_ParseTuple(args, "OLO!O!O!", &streams, &window, &PySet_Type, &rebuild,
                          &PySet_Type, &dirty, &PySet_Type, &hot))
        return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (window < 0) {
        PyErr_SetString(PyExc_ValueError, "window_ms < 0");
        return NULL;
    }
    items = as_sequence(streams);
    if (items == NULL)
        return NULL;
    slow = PyList_New(0);
    if (slow == NULL)
        goto error;
    for (i = 0; i < (n = SEQ_SIZE(items)); i++) {
        PyObject *stream;
        int r;
        if (i + 6 < n)
            prefetch_stream(SEQ_ITEM(items, i + 6), 0);
        if (i + 4 < n)
            prefetch_stream(SEQ_ITEM(items, i + 4), 1);
        if (i + 2 < n)
            prefetch_stream(SEQ_ITEM(items, i + 2), 2);
        stream = SEQ_ITEM(items, i);
        Py_INCREF(stream); /* a set probe's Python code may drop it from the list */
        r = stream_one(stream, (int64_t)window, rebuild, dirty, hot, &pass);
        if (r < 0 || (r == 1 && PyList_Append(slow, stream) < 0)) {
            Py_DECREF(stream);
            goto error;
        }
        Py_DECREF(stream);
    }
    Py_DECREF(items);
    Py_CLEAR(pass.last_dirty);
    if (sums_flush(&pass) < 0) {
        Py_DECREF(slow);
        return NULL;
    }
    return slow;
error:
    Py_DECREF(items);
    Py_XDECREF(slow);
    Py_CLEAR(pass.last_dirty);
    {
        /* Add what the streams done so far moved, keeping the error being raised. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (sums_flush(&pass) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    return NULL;
}

/* ----------------------------------------------------------- connection pass */

/* 0 and *out (a new reference), 1 ask Python, -1 error (nothing changed). */
static int connection_one(PyObject *record, PyObject *code, int64_t window, PyObject *dirty,
                          int64_t *deltas, PyObject *peer, PyObject **out)
{
    PyObject *parts, *traffic, *latency_o, *old_tagged;
    CodeObject *cc = (CodeObject *)code;
    PyObject *traffic_b = NULL, *latency_b = NULL, *header_b = NULL, *tag_b = NULL;
    PyObject *tagged = NULL;
    int64_t t[T_N], c[4], status, c_status, close_ts, c_close_ts, latency, c_latency;
    int64_t bw_in = 0, bw_out = 0, prev_in, prev_out, total_v[4];
    int hot, new_hot = 0, in_dirty, tags_same, moved, need_traffic, k;
    unsigned char buf[TRAFFIC_MAX];
    Py_ssize_t n, i, traffic_len = 0, body, total, streams_len = 0, part_max;
    char *w;

    in_dirty = PySet_GET_SIZE(dirty) ? PySet_Contains(dirty, record) : 0;
    if (in_dirty < 0)
        return -1;
    if (get(record, &L_r, R_CODE) != code)
        return 1; /* the probe's Python code replaced it (see stream_one) */
    hot = cc->hot;
    traffic = get(record, &L_r, R_TRAFFIC);
    if (read_counters(traffic, t) < 0)
        return 1;
    for (k = 0; k < 4; k++)
        if ((c[k] = cc->c[k]) < 0)
            return 1;
    if (i64(get(record, &L_r, R_STATUS), &status) < 0 ||
        i64(get(code, &L_cc, CC_STATUS), &c_status) < 0 ||
        i64(get(record, &L_r, R_CLOSE_TS), &close_ts) < 0 ||
        i64(get(code, &L_cc, CC_CLOSE_TS), &c_close_ts) < 0)
        return 1;
    latency_o = get(record, &L_r, R_LATENCY);
    if (i64(latency_o, &latency) < 0 || i64(get(code, &L_cc, CC_LATENCY), &c_latency) < 0)
        return 1;
    tags_same = same_tags(get(record, &L_r, R_TAGS), get(code, &L_cc, CC_TAGS));
    if (tags_same < 0)
        return 1;
    moved = (uint64_t)t[T_IN_P] + (uint64_t)t[T_OUT_P] != (uint64_t)c[1] + (uint64_t)c[3];
    if (!(in_dirty || hot || moved || status != c_status || close_ts != c_close_ts ||
          latency != c_latency || peer != get(code, &L_cc, CC_PEER) || !tags_same)) {
        old_tagged = get(code, &L_cc, CC_TAGGED);
        if (old_tagged == NULL || !PyBytes_CheckExact(old_tagged))
            return 1;
        Py_INCREF(old_tagged);
        *out = old_tagged;
        return 0;
    }
    if (status != c_status || close_ts != c_close_ts || !tags_same || latency < 0 ||
        !PyBytes_CheckExact(peer) || PyBytes_GET_SIZE(peer) > PY_SSIZE_T_MAX / 4)
        return 1; /* the Python code encodes those fields */
    /* What the new values replace is bytes too: dropping it runs no Python code. */
    if (get(code, &L_cc, CC_PEER) == NULL || !PyBytes_CheckExact(get(code, &L_cc, CC_PEER)) ||
        get(code, &L_cc, CC_TAGGED) == NULL || !PyBytes_CheckExact(get(code, &L_cc, CC_TAGGED)))
        return 1;
    parts = get(code, &L_cc, CC_PARTS);
    if (parts == NULL || !PyList_CheckExact(parts) || PyList_GET_SIZE(parts) < P_MIN)
        return 1;
    n = PyList_GET_SIZE(parts);
    part_max = PY_SSIZE_T_MAX / 4 / n; /* once: a division per part showed in the profile */
    for (i = 0; i < n; i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        if (!PyBytes_CheckExact(part) || PyBytes_GET_SIZE(part) > part_max)
            return 1;
        if (i >= P_IDS && i < n - 2) /* the stream ids, then the streams */
            streams_len += PyBytes_GET_SIZE(part);
    }
    need_traffic = hot || moved || PyBytes_GET_SIZE(PyList_GET_ITEM(parts, P_TRAFFIC)) == 0;
    if (need_traffic) {
        if (bandwidths(t, window, &bw_in, &bw_out, &prev_in, &prev_out) < 0)
            return 1;
        new_hot = bw_in || bw_out || t[T_IN_B] != prev_in || t[T_OUT_B] != prev_out;
        for (k = 0; k < 4; k++) /* both >= 0: the difference does not overflow */
            if (__builtin_add_overflow(deltas[k], t[k] - c[k], &total_v[k]))
                return 1;
        traffic_len = put_traffic(buf, 0x42, t, bw_in, bw_out);
        if ((traffic_b = PyBytes_FromStringAndSize((const char *)buf, traffic_len)) == NULL)
            goto error;
    }
    if (latency != c_latency) {
        latency_b = latency ? tagged_varint(0x50, (uint64_t)latency) : PyBytes_FromStringAndSize("", 0);
        if (latency_b == NULL)
            goto error;
    }
    if ((header_b = tagged_varint_as(0x5a, (uint64_t)streams_len,
                                     PyList_GET_ITEM(parts, P_STREAMS))) == NULL)
        goto error;
#define PART_LEN(i) PyBytes_GET_SIZE(PyList_GET_ITEM(parts, (i)))
    body = PART_LEN(P_HEAD) + (traffic_b ? PyBytes_GET_SIZE(traffic_b) : PART_LEN(P_TRAFFIC)) +
           PART_LEN(P_ATTRIBS) + (latency_b ? PyBytes_GET_SIZE(latency_b) : PART_LEN(P_LATENCY)) +
           PyBytes_GET_SIZE(header_b) + streams_len + PART_LEN(n - 2) +
           PyBytes_GET_SIZE(peer);
    if ((tag_b = tagged_varint_as(0x0a, (uint64_t)body, PyList_GET_ITEM(parts, P_TAG))) == NULL)
        goto error;
    total = 0;
    for (i = 0; i < n; i++) {
        PyObject *part = i == P_TAG ? tag_b
                         : i == P_TRAFFIC && traffic_b ? traffic_b
                         : i == P_LATENCY && latency_b ? latency_b
                         : i == P_STREAMS ? header_b
                         : i == n - 1 ? peer
                                      : PyList_GET_ITEM(parts, i);
        total += PyBytes_GET_SIZE(part); /* each part < PY_SSIZE_T_MAX / 4 / n */
    }
    if ((tagged = PyBytes_FromStringAndSize(NULL, total)) == NULL)
        goto error;

    /* Change the state (nothing fails from here on). */
    Py_INCREF(parts);
    if (traffic_b != NULL) {
        if (window > 0) {
            ((CounterObject *)traffic)->t[T_PREV_IN] = t[T_IN_B];
            ((CounterObject *)traffic)->t[T_PREV_OUT] = t[T_OUT_B];
        }
        PyList_SetItem(parts, P_TRAFFIC, traffic_b);
        cc->hot = (char)new_hot;
        for (k = 0; k < 4; k++) {
            deltas[k] = total_v[k];
            cc->c[k] = t[k];
        }
    }
    if (latency_b != NULL) {
        put_ref(code, &L_cc, CC_LATENCY, latency_o);
        PyList_SetItem(parts, P_LATENCY, latency_b);
    }
    put_ref(code, &L_cc, CC_PEER, peer);
    Py_INCREF(peer);
    PyList_SetItem(parts, n - 1, peer);
    PyList_SetItem(parts, P_STREAMS, header_b);
    PyList_SetItem(parts, P_TAG, tag_b);
    w = PyBytes_AS_STRING(tagged);
    for (i = 0; i < n; i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        Py_ssize_t len = PyBytes_GET_SIZE(part);
        memcpy(w, PyBytes_AS_STRING(part), len);
        w += len;
    }
    put_ref(code, &L_cc, CC_TAGGED, tagged);
    Py_DECREF(parts);
    *out = tagged;
    return 0;
#undef PART_LEN

error:
    Py_XDECREF(traffic_b);
    Py_XDECREF(latency_b);
    Py_XDECREF(header_b);
    Py_XDECREF(tag_b);
    Py_XDECREF(tagged);
    return -1;
}

/* Load what connection_one will read of a record ahead of time, as prefetch_stream. */
static inline void prefetch_record(PyObject *record, int depth)
{
    PyObject *code, *parts;
    Py_ssize_t i, n;
    if (depth == 0) {
        __builtin_prefetch(record);
        __builtin_prefetch((char *)record + 64);
        __builtin_prefetch((char *)record + 128);
        return;
    }
    if (Py_TYPE(record) != L_r.type)
        return;
    code = get(record, &L_r, R_CODE);
    if (code == NULL)
        return;
    if (depth == 1) {
        __builtin_prefetch(code);
        __builtin_prefetch((char *)code + 64);
        __builtin_prefetch(get(record, &L_r, R_TRAFFIC));
        __builtin_prefetch(get(record, &L_r, R_TAGS));
        return;
    }
    if (Py_TYPE(code) != L_cc.type)
        return;
    parts = get(code, &L_cc, CC_PARTS);
    if (parts == NULL || !PyList_CheckExact(parts))
        return;
    n = PyList_GET_SIZE(parts);
    if (depth == 2) {
        __builtin_prefetch(((PyListObject *)parts)->ob_item);
        if (n > 8)
            __builtin_prefetch(((PyListObject *)parts)->ob_item + 8);
        if (n > 16)
            __builtin_prefetch(((PyListObject *)parts)->ob_item + 16);
        __builtin_prefetch(get(code, &L_cc, CC_TAGS));
        return;
    }
    for (i = 0; i < n && i < 64; i++)
        __builtin_prefetch(PyList_GET_ITEM(parts, i));
}

/* The Python code's answer for ``record``; 0 ok, -1 error. */
static int ask_python(PyObject *slow, PyObject *record, PyObject *peer, PyObject *out)
{
    PyObject *got = PyObject_CallFunctionObjArgs(slow, record, peer ? peer : Py_None, NULL);
    int r = 0;
    if (got == NULL)
        return -1;
    if (got != Py_None) {
        if (!PyBytes_Check(got)) {
            PyErr_SetString(PyExc_TypeError, "slow() must return bytes or None");
            r = -1;
        } else {
            r = PyList_Append(out, got);
        }
    }
    Py_DECREF(got);
    return r;
}

/* Add a pass's deltas to the node-wide totals (a list of four Python ints: no overflow);
 * -1 on an error (a memory error, or totals not such a list). */
static int totals_flush(PyObject *totals, int64_t *deltas)
{
    int k;
    for (k = 0; k < 4; k++) {
        PyObject *delta, *sum;
        if (deltas[k] == 0)
            continue;
        if (PyList_GET_SIZE(totals) <= k) {
            PyErr_SetString(PyExc_ValueError, "totals must hold four counters");
            return -1;
        }
        delta = PyLong_FromLongLong(deltas[k]);
        sum = delta ? PyNumber_Add(PyList_GET_ITEM(totals, k), delta) : NULL;
        Py_XDECREF(delta);
        if (sum == NULL)
            return -1;
        PyList_SetItem(totals, k, sum);
        deltas[k] = 0;
    }
    return 0;
}

/* The field of ``peer_id`` in the dict ``fields`` (a new reference; b"" when missing),
 * NULL without an error set when the Python code must do it, NULL with one on an error. */
static PyObject *peer_lookup(PyObject *fields, PyObject *peer_id)
{
    PyObject *got;
    if (!PyUnicode_CheckExact(peer_id))
        return NULL;
    got = PyDict_GetItemWithError(fields, peer_id); /* borrowed */
    if (got == NULL)
        return PyErr_Occurred() ? NULL : PyBytes_FromStringAndSize(NULL, 0);
    if (!PyBytes_CheckExact(got))
        return NULL;
    Py_INCREF(got);
    return got;
}

/* Only an Exception is the record's fault (the Python code catches those). */
static int swallow(void)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyErr_Clear();
    return 0;
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* connection_pass's work for one record (held by the caller): its field appended to
 * ``out`` (or the Python code's answer); 0, or -1 on an error. */
static int connection_record(PyObject *record, int64_t window, PyObject *rebuild,
                             PyObject *dirty, int64_t *deltas, PyObject *peer_field,
                             PyObject *latency, PyObject *slow, PyObject *out)
{
    PyObject *conn, *peer, *code, *got = NULL;
    int r;
    if (Py_TYPE(record) != L_r.type || (conn = get(record, &L_r, R_CONN)) == NULL ||
        get(record, &L_r, R_PEER_ID) == NULL) {
        if (ask_python(slow, record, NULL, out) < 0)
            return -1;
        return 0;
    }
    if (conn != Py_None) {
        PyObject *ns;
        Py_INCREF(conn);
        ns = PyObject_CallOneArg(latency, conn);
        Py_DECREF(conn);
        if (ns == NULL) {
            if (swallow() < 0 || ask_python(slow, record, NULL, out) < 0)
                return -1;
            return 0;
        }
        if (!configured || Py_TYPE(record) != L_r.type) { /* the callback reconfigured */
            Py_DECREF(ns);
            PyErr_SetString(PyExc_RuntimeError, "reconfigured during a pass");
            return -1;
        }
        put(record, &L_r, R_LATENCY, ns);
    }
    peer = get(record, &L_r, R_PEER_ID);
    if (peer == NULL) {
        if (ask_python(slow, record, NULL, out) < 0)
            return -1;
        return 0;
    }
    Py_INCREF(peer);
    {
        PyObject *peer_id = peer;
        peer = PyDict_CheckExact(peer_field) ? peer_lookup(peer_field, peer_id)
                                             : PyObject_CallOneArg(peer_field, peer_id);
        Py_DECREF(peer_id);
    }
    if (peer == NULL) {
        if ((PyErr_Occurred() && swallow() < 0) || ask_python(slow, record, NULL, out) < 0)
            return -1;
        return 0;
    }
    if (!configured || Py_TYPE(record) != L_r.type) { /* the callback reconfigured */
        Py_DECREF(peer);
        PyErr_SetString(PyExc_RuntimeError, "reconfigured during a pass");
        return -1;
    }
    code = get(record, &L_r, R_CODE);
    r = 1;
    if (code != NULL && code != Py_None && Py_TYPE(code) == L_cc.type) {
        Py_INCREF(code); /* held across the probe (Python code may run: see stream_one)
                            and while its slots change */
        r = PySet_Contains(rebuild, record);
        if (r == 0 && get(record, &L_r, R_CODE) != code)
            r = 1; /* the probe's Python code replaced it: the Python code does it */
        if (r == 0)
            r = connection_one(record, code, (int64_t)window, dirty, deltas, peer, &got);
        Py_DECREF(code);
    }
    if (r < 0 || (r == 1 && ask_python(slow, record, peer, out) < 0) ||
        (r == 0 && PyList_Append(out, got) < 0)) {
        Py_XDECREF(got);
        Py_DECREF(peer);
        return -1;
    }
    Py_XDECREF(got);
    Py_DECREF(peer);
    return 0;
}

static PyObject *connection_pass(PyObject *self, PyObject *args)
{
    PyObject *records, *rebuild, *dirty, *totals, *peer_field, *latency, *slow, *items, *out;
    long long window, budget = 0;
    Py_ssize_t i, n, start = 0;
    int64_t deltas[4] = {0, 0, 0, 0}, began = 0;
    if (!PyArg_ParseTuple(args, "OLO!O!O!OOO|nL", &records, &window, &PySet_Type, &rebuild,
                          &PySet_Type, &dirty, &PyList_Type, &totals, &peer_field, &latency,
                          &slow, &start, &budget))
        return NULL;
    if (start < 0) {
        PyErr_SetString(PyExc_ValueError, "start < 0");
        return NULL;
    }
    if (budget > 0)
        began = monotonic_ns();
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (window < 0) {
        PyErr_SetString(PyExc_ValueError, "window_ms < 0");
        return NULL;
    }
    items = as_sequence(records);
    if (items == NULL)
        return NULL;
    out = PyList_New(0);
    if (out == NULL)
        goto error;
    for (i = start; i < (n = SEQ_SIZE(items)); i++) {
        PyObject *record;
        int r;
        if (budget > 0 && i > start && ((i - start) & 3) == 0 &&
            monotonic_ns() - began >= budget)
            break;
        if (i + 6 < n)
            prefetch_record(SEQ_ITEM(items, i + 6), 0);
        if (i + 4 < n)
            prefetch_record(SEQ_ITEM(items, i + 4), 1);
        if (i + 2 < n)
            prefetch_record(SEQ_ITEM(items, i + 2), 2);
        if (i + 1 < n)
            prefetch_record(SEQ_ITEM(items, i + 1), 3);
        record = SEQ_ITEM(items, i);
        Py_INCREF(record); /* the callbacks' Python code may drop it from the list */
        r = connection_record(record, (int64_t)window, rebuild, dirty, deltas, peer_field,
                              latency, slow, out);
        Py_DECREF(record);
        if (r < 0)
            goto error;
    }
    Py_DECREF(items);
    if (totals_flush(totals, deltas) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    if (budget > 0) {
        PyObject *pair = Py_BuildValue("(Nn)", out, i < start ? start : i);
        return pair; /* steals out (N) */
    }
    return out;
error:
    Py_DECREF(items);
    Py_XDECREF(out);
    {
        /* Add what the connections done so far moved, keeping the error being raised. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (totals_flush(totals, deltas) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    return NULL;
}

/* ----------------------------------------------------------------- FNV-1a */

/* FNV-1a 32 is serial: h = (h ^ byte) * p, one multiply per byte, each waiting for the
 * last (about 4 cycles a byte). Where the CPU has AVX-512BW and PCLMUL it is computed
 * another way, to the same value, about three times faster; elsewhere byte by byte.
 *
 * The other way. Only the low byte of h decides what the xor does: h ^ b = h + e, with
 * e = (s ^ b) - s for s = h & 0xff, so over bytes b_1..b_n
 *     h_n = h_0 p^n + sum_j e_j p^(n-j+1)   (mod 2^32),
 * and the low bytes s_j follow an 8-bit automaton of their own,
 *     s_j = ((s_(j-1) ^ b_j) * 0x93) & 0xff   (0x93: p's low byte).
 * Given the automaton's states, the sum is a polynomial in p, computed 64 bytes at a
 * time in 16 lanes (e_j = b_j - 2 (b_j & s_(j-1)); lane weights p^(64-i), each lane's
 * sum times p^64 per block). The automaton itself is computed bit-sliced: for a block
 * of 64 bytes, plane k holds bit k of every byte. Writing x = s_(j-1) ^ b_j and
 * x * 0x93 = x + 2x + 16x + 128x as three ripple-carry additions, bit k of s_j is
 * x_k ^ c_k, where c_k depends on the bits below k only (x_(k-1), x_(k-4), x_(k-7) and
 * the carries into bit k); so, plane by plane from bit 0 up, s_k(j) = s_k(j-1) ^ b_k(j)
 * ^ c_k(j) is a prefix xor along the block (a carry-less multiply by all ones), started
 * from bit k of the state entering the block. Blocks are taken a batch at a time, plane
 * by plane across the batch, so that only that one bit per plane links a block to the
 * next and the CPU overlaps the blocks' work; with VPCLMULQDQ, 8 blocks at a time in a
 * vector's lanes (fnv_blocks_v; the blocks left over, fewer than 8, by fnv_blocks_s).
 * 1 MB here: 0.9 ms byte by byte, 0.3 ms (fnv_blocks_s), 0.14 ms (fnv_blocks_v).
 * tests/introspector/test_snapshot_frame.py checks it against the byte-by-byte
 * definition. */

#define FNV_PRIME 0x01000193u
#define FNV_STAGED 256 /* blocks handed to fnv_blocks at a time */

static uint32_t fnv_serial(uint32_t h, const unsigned char *p, Py_ssize_t n)
{
    const unsigned char *end = p + n;
    for (; p < end; p++) {
        h ^= *p;
        h *= FNV_PRIME;
    }
    return h;
}

/* The block path's state between two batches: the lanes' sums, h_0 p^(64 m), the low
 * byte of h. The value is hp + the sum of the lanes. */
typedef struct {
    uint32_t acc[64];
    uint32_t hp;
    unsigned s;
} fnv_blocks_t;

static uint32_t fnv_weights[64]; /* p^(64 - i) */
static uint32_t fnv_p64;         /* p^64 */
static int fnv_blocked = 0;      /* whether fnv_blocks runs (the CPU has what it needs) */
static int fnv_vector = 0;       /* whether fnv_blocks_v runs (0 where it is not built) */

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FNV_BLOCKS_BUILT 1
#define FNV_BATCH 32
#define FNV_TARGET __attribute__((target("avx512f,avx512bw,pclmul")))
/* The polynomial step of lane group ``l`` (16 of a block's 64 bytes) in both block
 * paths: acc = acc * p^64 + e * w, with e = b - 2q (q: the low-byte automaton's bits). */
#define FNV_LANE(l)                                                                        \
    do {                                                                                   \
        __m512i bb = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(v, l));                \
        __m512i qq = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(qv, l));               \
        __m512i e = _mm512_sub_epi32(bb, _mm512_add_epi32(qq, qq));                        \
        acc[l] = _mm512_add_epi32(_mm512_mullo_epi32(acc[l], p64), _mm512_mullo_epi32(e, w[l])); \
    } while (0)

FNV_TARGET static inline uint64_t prefix_xor(uint64_t d)
{
    __m128i r = _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)d), _mm_set1_epi64x(-1), 0);
    return (uint64_t)_mm_cvtsi128_si64(r);
}

/* Hash ``n`` blocks of 64 bytes (``blocks``: their addresses, in order) into ``f``, a
 * block's planes in scalar registers. */
FNV_TARGET static void fnv_blocks_s(fnv_blocks_t *f, const unsigned char *const *blocks,
                                    Py_ssize_t n)
{
    __m512i acc[4], w[4], p64 = _mm512_set1_epi32((int)fnv_p64);
    uint64_t b[FNV_BATCH][8], x[FNV_BATCH][8], q[FNV_BATCH][8], ca[FNV_BATCH], cb[FNV_BATCH];
    uint32_t hp = f->hp;
    unsigned s = f->s;
    Py_ssize_t m, nb, j;
    int l, k;
    for (l = 0; l < 4; l++) {
        acc[l] = _mm512_loadu_si512((const void *)(f->acc + 16 * l));
        w[l] = _mm512_loadu_si512((const void *)(fnv_weights + 16 * l));
    }
    for (m = 0; m < n; m += nb) {
        nb = n - m < FNV_BATCH ? n - m : FNV_BATCH;
        for (j = 0; j < nb; j++) { /* the planes */
            __m512i v = _mm512_loadu_si512((const void *)blocks[m + j]);
            for (k = 0; k < 8; k++)
                b[j][k] = (uint64_t)_mm512_test_epi8_mask(v, _mm512_set1_epi8((char)(1 << k)));
            ca[j] = cb[j] = 0;
        }
#pragma GCC unroll 8
        for (k = 0; k < 8; k++) { /* the automaton, a plane at a time */
            uint64_t in = (s >> k) & 1;
            for (j = 0; j < nb; j++) {
                uint64_t xm = k ? x[j][k - 1] : 0, t = xm ^ ca[j], y = k >= 4 ? x[j][k - 4] : 0;
                uint64_t c = t ^ (k >= 4 ? y ^ cb[j] : 0) ^ (k == 7 ? x[j][0] : 0);
                uint64_t sk = prefix_xor(b[j][k] ^ c) ^ (0 - in), xk = sk ^ c;
                x[j][k] = xk;
                q[j][k] = b[j][k] & ((sk << 1) | in); /* bit k of b_j & s_(j-1) */
                in = sk >> 63;
                if (k < 7) { /* the carries into bit k + 1 of x + 2x, then of + 16x */
                    uint64_t a = xk ^ t;
                    ca[j] = (xk & xm) | (ca[j] & (xk ^ xm));
                    cb[j] = (a & y) | (cb[j] & (a ^ y));
                }
            }
            s = (s & ~(1u << k)) | (unsigned)in << k;
        }
        for (j = 0; j < nb; j++) { /* the polynomial */
            __m512i v = _mm512_loadu_si512((const void *)blocks[m + j]);
            __m512i qv = _mm512_maskz_mov_epi8(q[j][0], _mm512_set1_epi8(1));
            for (k = 1; k < 8; k++)
                qv = _mm512_or_si512(
                    qv, _mm512_maskz_mov_epi8(q[j][k], _mm512_set1_epi8((char)(1 << k))));
            FNV_LANE(0);
            FNV_LANE(1);
            FNV_LANE(2);
            FNV_LANE(3);
            hp *= fnv_p64;
        }
    }
    for (l = 0; l < 4; l++)
        _mm512_storeu_si512((void *)(f->acc + 16 * l), acc[l]);
    f->hp = hp;
    f->s = s;
}

/* fnv_blocks for groups of 8 blocks, the planes' work done 8 blocks at a time in the
 * lanes of a vector (block j of a group in lane j): each lane's prefix xor is a
 * carry-less multiply (VPCLMULQDQ), and the bit entering lane j is the state's bit
 * xor the parities of the lanes before it (an 8-bit prefix xor of the lanes' parity
 * mask). ``n`` is a multiple of 8. */
#define FNV_VTARGET __attribute__((target("avx512f,avx512bw,pclmul,vpclmulqdq")))
#define FNV_VGROUPS 4

FNV_VTARGET static void fnv_blocks_v(fnv_blocks_t *f, const unsigned char *const *blocks,
                                     Py_ssize_t n)
{
    __m512i acc[4], w[4], p64 = _mm512_set1_epi32((int)fnv_p64);
    const __m512i ones = _mm512_set1_epi64(-1), one = _mm512_set1_epi64(1);
    const __m512i top = _mm512_set1_epi64((long long)0x8000000000000000ULL);
    uint64_t b[8][8 * FNV_VGROUPS], q[8][8 * FNV_VGROUPS];
    __m512i x[8][FNV_VGROUPS], ca[FNV_VGROUPS], cb[FNV_VGROUPS];
    uint32_t hp = f->hp;
    unsigned s = f->s;
    Py_ssize_t m, nb, j;
    int l, k, g, ng;
    for (l = 0; l < 4; l++) {
        acc[l] = _mm512_loadu_si512((const void *)(f->acc + 16 * l));
        w[l] = _mm512_loadu_si512((const void *)(fnv_weights + 16 * l));
    }
    for (m = 0; m < n; m += nb) {
        nb = n - m < 8 * FNV_VGROUPS ? n - m : 8 * FNV_VGROUPS;
        ng = (int)(nb / 8);
        for (j = 0; j < nb; j++) { /* the planes, plane-major */
            __m512i v = _mm512_loadu_si512((const void *)blocks[m + j]);
            for (k = 0; k < 8; k++)
                b[k][j] = (uint64_t)_mm512_test_epi8_mask(v, _mm512_set1_epi8((char)(1 << k)));
        }
        for (g = 0; g < ng; g++)
            ca[g] = cb[g] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (k = 0; k < 8; k++) {
            unsigned in = (s >> k) & 1;
            for (g = 0; g < ng; g++) {
                __m512i bk = _mm512_loadu_si512((const void *)&b[k][8 * g]);
                __m512i xm = k ? x[k - 1][g] : _mm512_setzero_si512();
                __m512i y = k >= 4 ? x[k - 4][g] : _mm512_setzero_si512();
                __m512i t = _mm512_xor_si512(xm, ca[g]), c, d, lo, hi, sk, xk, lane_in;
                unsigned par, incl, cin;
                c = k >= 4 ? _mm512_ternarylogic_epi64(t, y, cb[g], 0x96) : t;
                if (k == 7)
                    c = _mm512_xor_si512(c, x[0][g]);
                d = _mm512_xor_si512(bk, c);
                lo = _mm512_clmulepi64_epi128(d, ones, 0x00);
                hi = _mm512_clmulepi64_epi128(d, ones, 0x01);
                sk = _mm512_unpacklo_epi64(lo, hi); /* each lane's prefix xor */
                par = (unsigned)_mm512_test_epi64_mask(sk, top);
                incl = par ^ (par << 1);
                incl ^= incl << 2;
                incl ^= incl << 4;
                cin = ((incl << 1) ^ (in ? 0xFFu : 0u)) & 0xFFu; /* the bit entering each lane */
                in ^= (incl >> 7) & 1;
                sk = _mm512_mask_xor_epi64(sk, (__mmask8)cin, sk, ones);
                xk = _mm512_xor_si512(sk, c);
                x[k][g] = xk;
                lane_in = _mm512_maskz_mov_epi64((__mmask8)cin, one);
                _mm512_storeu_si512((void *)&q[k][8 * g],
                                    _mm512_and_si512(bk, _mm512_or_si512(_mm512_slli_epi64(sk, 1),
                                                                         lane_in)));
                if (k < 7) {
                    __m512i a = _mm512_xor_si512(xk, t);
                    ca[g] = _mm512_ternarylogic_epi64(xk, xm, ca[g], 0xE8);
                    cb[g] = _mm512_ternarylogic_epi64(a, y, cb[g], 0xE8);
                }
            }
            s = (s & ~(1u << k)) | in << k;
        }
        for (j = 0; j < nb; j++) { /* the polynomial */
            __m512i v = _mm512_loadu_si512((const void *)blocks[m + j]);
            __m512i qv = _mm512_maskz_mov_epi8(q[0][j], _mm512_set1_epi8(1));
            for (k = 1; k < 8; k++)
                qv = _mm512_or_si512(
                    qv, _mm512_maskz_mov_epi8(q[k][j], _mm512_set1_epi8((char)(1 << k))));
            FNV_LANE(0);
            FNV_LANE(1);
            FNV_LANE(2);
            FNV_LANE(3);
            hp *= fnv_p64;
        }
    }
    for (l = 0; l < 4; l++)
        _mm512_storeu_si512((void *)(f->acc + 16 * l), acc[l]);
    f->hp = hp;
    f->s = s;
}

/* Hash ``n`` blocks of 64 bytes (``blocks``: their addresses, in order) into ``f``. */
static void fnv_blocks(fnv_blocks_t *f, const unsigned char *const *blocks, Py_ssize_t n)
{
    if (fnv_vector && n >= 8) {
        fnv_blocks_v(f, blocks, n & ~(Py_ssize_t)7);
        blocks += n & ~(Py_ssize_t)7;
        n &= 7;
    }
    if (n)
        fnv_blocks_s(f, blocks, n);
}
#undef FNV_LANE
#endif

static void fnv_init(void)
{
    uint32_t x = 1;
    int i;
    for (i = 63; i >= 0; i--) {
        x *= FNV_PRIME;
        fnv_weights[i] = x;
    }
    fnv_p64 = x;
#ifdef FNV_BLOCKS_BUILT
    __builtin_cpu_init();
    fnv_blocked = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("pclmul");
    fnv_vector = fnv_blocked && __builtin_cpu_supports("vpclmulqdq");
#endif
}

/* FNV-1a 32 of the concatenation of ``n`` pieces (bytes objects) from ``h``. No Python
 * code runs here: the pieces stay as they are. */
static uint32_t fnv_pieces(uint32_t h, PyObject *const *pieces, Py_ssize_t n)
{
    Py_ssize_t i;
#ifdef FNV_BLOCKS_BUILT
    if (fnv_blocked) {
        /* Whole blocks are hashed where they lie; a block across two pieces is copied
         * into ``staged`` first; the last partial block byte by byte. */
        const unsigned char *blocks[FNV_STAGED];
        unsigned char staged[FNV_STAGED][64], tail[64];
        Py_ssize_t nblocks = 0, nstaged = 0, fill = 0, k;
        fnv_blocks_t f;
        uint32_t sum = 0;
        memset(f.acc, 0, sizeof f.acc);
        f.hp = h;
        f.s = h & 0xff;
        for (i = 0; i < n; i++) {
            const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(pieces[i]);
            Py_ssize_t len = PyBytes_GET_SIZE(pieces[i]);
            if (fill) {
                Py_ssize_t take = len < 64 - fill ? len : 64 - fill;
                memcpy(tail + fill, p, (size_t)take);
                fill += take;
                p += take;
                len -= take;
                if (fill < 64)
                    continue;
                memcpy(staged[nstaged], tail, 64);
                blocks[nblocks++] = staged[nstaged++];
                fill = 0;
            }
            for (;;) {
                if (nblocks == FNV_STAGED) {
                    fnv_blocks(&f, blocks, nblocks);
                    nblocks = nstaged = 0;
                }
                if (len < 64)
                    break;
                blocks[nblocks++] = p;
                p += 64;
                len -= 64;
            }
            memcpy(tail, p, (size_t)len);
            fill = len;
        }
        if (nblocks)
            fnv_blocks(&f, blocks, nblocks);
        for (k = 0; k < 64; k++)
            sum += f.acc[k];
        return fnv_serial(f.hp + sum, tail, fill);
    }
#endif
    for (i = 0; i < n; i++) {
        if (i + 1 < n)
            __builtin_prefetch(PyBytes_AS_STRING(pieces[i + 1]));
        h = fnv_serial(h, (const unsigned char *)PyBytes_AS_STRING(pieces[i]),
                       PyBytes_GET_SIZE(pieces[i]));
    }
    return h;
}

static PyObject *fnv1a32(PyObject *self, PyObject *args)
{
    PyObject *pieces, *state = NULL;
    unsigned long long seed = 0x811c9dc5ULL;
    Py_ssize_t i, n;
    if (!PyArg_ParseTuple(args, "O!|O!", &PyList_Type, &pieces, &PyLong_Type, &state))
        return NULL;
    if (state != NULL) {
        /* Not "k", which takes any int modulo 2**64 (2**64 + 5 would be the state 5). */
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(state, &overflow);
        if (v == -1 && PyErr_Occurred())
            return NULL;
        if (overflow || v < 0 || v > 0xFFFFFFFFLL) {
            PyErr_SetString(PyExc_ValueError, "the FNV-1a 32 state is 32 bits");
            return NULL;
        }
        seed = (unsigned long long)v;
    }
    n = PyList_GET_SIZE(pieces);
    for (i = 0; i < n; i++)
        if (!PyBytes_CheckExact(PyList_GET_ITEM(pieces, i))) {
            PyErr_SetString(PyExc_TypeError, "fnv1a32() hashes a list of bytes");
            return NULL;
        }
    /* No Python code runs from here: the list and its items stay as they are. */
    return PyLong_FromUnsignedLong(
        fnv_pieces((uint32_t)seed, ((PyListObject *)pieces)->ob_item, n));
}

/* frame(pieces, version): the live frame of the message the pieces make: the header
 * (version, FNV-1a 32 of the message, its size: three little-endian uint32) and the
 * pieces, in one copy; the hash is taken from the copy, a stretch at a time while it is
 * still in the cache (contiguous: no block straddles two pieces). */
#define FRAME_HASH_STRETCH (1 << 15)

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static PyObject *frame(PyObject *self, PyObject *args)
{
    PyObject *pieces, *out;
    Py_ssize_t version, i, n, size = 0, copied = 0;
    unsigned char *body;
    uint32_t h = 0x811c9dc5u;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &pieces, &version))
        return NULL;
    if (version < 0 || version > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "the version is 32 bits");
        return NULL;
    }
    n = PyList_GET_SIZE(pieces);
    for (i = 0; i < n; i++) {
        PyObject *piece = PyList_GET_ITEM(pieces, i);
        if (!PyBytes_CheckExact(piece)) {
            PyErr_SetString(PyExc_TypeError, "frame() joins a list of bytes");
            return NULL;
        }
        size += PyBytes_GET_SIZE(piece);
        if (size > 0xFFFFFFFFLL) {
            PyErr_SetString(PyExc_ValueError, "a frame's message is at most 2**32 - 1 bytes");
            return NULL;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, 12 + size);
    if (out == NULL)
        return NULL;
    body = (unsigned char *)PyBytes_AS_STRING(out) + 12;
    /* No Python code runs from here: the list and its items stay as they are. */
#ifdef FNV_BLOCKS_BUILT
    if (fnv_blocked) {
        const unsigned char *blocks[FNV_STAGED];
        Py_ssize_t hashed = 0, k;
        fnv_blocks_t f;
        uint32_t sum = 0;
        memset(f.acc, 0, sizeof f.acc);
        f.hp = h;
        f.s = h & 0xff;
        for (i = 0; i <= n; i++) {
            if (i < n) {
                PyObject *piece = PyList_GET_ITEM(pieces, i);
                memcpy(body + copied, PyBytes_AS_STRING(piece), (size_t)PyBytes_GET_SIZE(piece));
                copied += PyBytes_GET_SIZE(piece);
                if (copied - hashed < FRAME_HASH_STRETCH)
                    continue;
            }
            while (copied - hashed >= 64) {
                Py_ssize_t nb = 0;
                while (nb < FNV_STAGED && copied - hashed >= 64) {
                    blocks[nb++] = body + hashed;
                    hashed += 64;
                }
                fnv_blocks(&f, blocks, nb);
            }
        }
        for (k = 0; k < 64; k++)
            sum += f.acc[k];
        h = fnv_serial(f.hp + sum, body + hashed, copied - hashed);
    } else
#endif
    {
        for (i = 0; i < n; i++) {
            PyObject *piece = PyList_GET_ITEM(pieces, i);
            Py_ssize_t len = PyBytes_GET_SIZE(piece);
            memcpy(body + copied, PyBytes_AS_STRING(piece), (size_t)len);
            h = fnv_serial(h, body + copied, len);
            copied += len;
        }
    }
    put_le32(body - 12, (uint32_t)version);
    put_le32(body - 8, h);
    put_le32(body - 4, (uint32_t)size);
    return out;
}

static PyMethodDef methods[] = {
    {"fnv1a32", fnv1a32, METH_VARARGS, "FNV-1a 32 of a list of bytes, from a state."},
    {"frame", frame, METH_VARARGS, "The live frame (header, then the pieces) in one copy."},
    {"configure", configure, METH_VARARGS, "Take the record and code types' slot layout."},
    {"stream_pass", stream_pass, METH_VARARGS, "encode_streams' loop (see the module doc)."},
    {"connection_pass", connection_pass, METH_VARARGS, "encode's loop (see the module doc)."},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------- types */

static int counter_traverse(CounterObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->observer);
    return 0;
}

static int counter_clear(CounterObject *self)
{
    Py_CLEAR(self->observer);
    return 0;
}

static void counter_dealloc(CounterObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    counter_clear(self);
    type->tp_free((PyObject *)self);
}

/* A count as an int64, or -1 with an error set (TypeError: not an int; OverflowError: it
 * does not fit), before anything is stored: a refused value leaves the field as it was. */
static int int64_value(PyObject *value, int64_t *out)
{
    int overflow = 0;
    long long x;
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "a count cannot be deleted");
        return -1;
    }
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "a count must be an int, not %.100s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    x = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "a count must fit in 64 bits (signed)");
        return -1;
    }
    if (x == -1 && PyErr_Occurred())
        return -1;
    *out = (int64_t)x;
    return 0;
}

static PyObject *counter_get(CounterObject *self, void *k)
{
    return PyLong_FromLongLong(self->t[(intptr_t)k]);
}

static int counter_set(CounterObject *self, PyObject *value, void *k)
{
    return int64_value(value, &self->t[(intptr_t)k]);
}

#define COUNT(name, k, doc) \
    {name, (getter)counter_get, (setter)counter_set, doc, (void *)(intptr_t)(k)}
static PyGetSetDef counter_getset[] = {
    COUNT("in_bytes", T_IN_B, "bytes received (read), cumulative"),
    COUNT("in_packets", T_IN_P, "reads that returned bytes, cumulative"),
    COUNT("out_bytes", T_OUT_B, "bytes sent (written), cumulative"),
    COUNT("out_packets", T_OUT_P, "completed writes, cumulative"),
    COUNT("prev_in_bytes", T_PREV_IN, "in_bytes at the previous snapshot"),
    COUNT("prev_out_bytes", T_PREV_OUT, "out_bytes at the previous snapshot"),
    {NULL, NULL, NULL, NULL, NULL},
};

/* The length of what a read returned or a write was given (bytes: at once), or -1. */
static Py_ssize_t chunk_size(PyObject *data)
{
    return PyBytes_CheckExact(data) ? PyBytes_GET_SIZE(data) : PyObject_Size(data);
}

/* One packet of ``size`` bytes added to the counts at ``bytes_at`` and ``packets_at``:
 * 0, or -1 with OverflowError set (the counts kept) if either would pass 2**63 - 1. */
static int counter_add_packet(CounterObject *self, int bytes_at, int packets_at, Py_ssize_t size)
{
    int64_t bytes, packets;
    if (__builtin_add_overflow(self->t[bytes_at], (int64_t)size, &bytes) ||
        __builtin_add_overflow(self->t[packets_at], (int64_t)1, &packets)) {
        PyErr_SetString(PyExc_OverflowError, "a count must fit in 64 bits (signed)");
        return -1;
    }
    self->t[bytes_at] = bytes;
    self->t[packets_at] = packets;
    return 0;
}

/* took(data): a read returned ``data``; a non-empty one is one inbound packet of its
 * length. Whether it was counted. A count that would pass 2**63 - 1 is refused
 * (OverflowError) and nothing changes. */
static PyObject *counter_took(CounterObject *self, PyObject *data)
{
    Py_ssize_t size = chunk_size(data);
    if (size < 0)
        return NULL;
    if (size == 0)
        Py_RETURN_FALSE;
    if (counter_add_packet(self, T_IN_B, T_IN_P, size) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

/* gave(data): a write of ``data`` completed: one outbound packet of its length. */
static PyObject *counter_gave(CounterObject *self, PyObject *data)
{
    Py_ssize_t size = chunk_size(data);
    if (size < 0)
        return NULL;
    if (counter_add_packet(self, T_OUT_B, T_OUT_P, size) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef counter_methods[] = {
    {"took", (PyCFunction)counter_took, METH_O,
     "took(data) -> bool: count what a read returned (a non-empty chunk is a packet)."},
    {"gave", (PyCFunction)counter_gave, METH_O,
     "gave(data) -> None: count a completed write of data (one packet)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef counter_members[] = {
    {"observer", T_OBJECT, offsetof(CounterObject, observer), 0,
     "called with each counted chunk a negotiated stream read, or None"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject Counter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "libp2p_introspection.introspector._snapcode.Counter",
    .tp_doc = "TrafficCounter's fields, inline (int64 counts; see traffic.py).",
    .tp_basicsize = sizeof(CounterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)counter_dealloc,
    .tp_traverse = (traverseproc)counter_traverse,
    .tp_clear = (inquiry)counter_clear,
    .tp_members = counter_members,
    .tp_getset = counter_getset,
    .tp_methods = counter_methods,
};

static PyObject *code_get(CodeObject *self, void *k)
{
    intptr_t i = (intptr_t)k;
    return PyLong_FromLongLong(i < 4 ? self->c[i] : self->slot);
}

static int code_set(CodeObject *self, PyObject *value, void *k)
{
    intptr_t i = (intptr_t)k;
    return int64_value(value, i < 4 ? &self->c[i] : &self->slot);
}

static PyObject *code_get_hot(CodeObject *self, void *unused)
{
    return PyBool_FromLong(self->hot);
}

static int code_set_hot(CodeObject *self, PyObject *value, void *unused)
{
    if (value == NULL || !PyBool_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "hot must be a bool");
        return -1;
    }
    self->hot = value == Py_True;
    return 0;
}

#define CODE_COUNT(name, k, doc) \
    {name, (getter)code_get, (setter)code_set, doc, (void *)(intptr_t)(k)}
static PyGetSetDef code_getset[] = {
    CODE_COUNT("in_b", 0, "in bytes it was encoded with"),
    CODE_COUNT("in_p", 1, "in packets it was encoded with"),
    CODE_COUNT("out_b", 2, "out bytes it was encoded with"),
    CODE_COUNT("out_p", 3, "out packets it was encoded with"),
    CODE_COUNT("slot", 4, "a stream's index in its connection's list of encodings, -1 if none"),
    {"hot", (getter)code_get_hot, (setter)code_set_hot,
     "whether to look at it again next snapshot", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Code_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "libp2p_introspection.introspector._snapcode.Code",
    .tp_doc = "The counts a stream or connection was encoded with, inline (see encoder.py).",
    .tp_basicsize = sizeof(CodeObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_getset = code_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_snapcode",
    "The incremental snapshot encoder's hot loops in C (optional; see encoder.py).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__snapcode(void)
{
    PyObject *m;
    if (PyType_Ready(&Counter_Type) < 0 || PyType_Ready(&Code_Type) < 0)
        return NULL;
    fnv_init();
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Counter", (PyObject *)&Counter_Type) < 0 ||
        PyModule_AddObjectRef(m, "Code", (PyObject *)&Code_Type) < 0 ||
        PyModule_AddIntConstant(m, "FNV1A32_BLOCKED", fnv_blocked + fnv_vector) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
