/*
 * The wire walk of libp2p_introspection.protocol.wire, in C: an optional
 * accelerator. The pure-Python walk stays the reference and the fallback.
 *
 * Both functions only ever answer "the Python code would find these bytes
 * sound, and here is what it would count" or "ask the Python code"
 * (None / False). Whenever anything is odd (a fault, a count over its cap,
 * a group, a non-canonical varint, nesting deeper than the cap) they give up
 * and the caller runs the Python code, which words the fault exactly as it
 * always did. Nothing here allocates per field; lengths only move a position
 * after they are checked against the bytes that hold them.
 *
 * walk(data, caps, max_fields) -> (kind_number, connections, streams,
 *     stream_ids, entries, fields) or None.
 *     The tables come from configure_walk(): a tuple of tables, each a tuple
 *     of (tag, counted kind or -1, child table index or -1); table 0 is the
 *     root (ServerMessage).
 * levels_ok(data, levels) -> bool
 *     Whether protowire.iter_fields would read every level of the tree
 *     ``levels`` without a fault (the levels inspect's summary of a snapshot
 *     reads): a tuple of nodes, each a tuple of (field number, child node
 *     index); node 0 is the message's top level. False also means "odd":
 *     the caller then reads the bytes with protowire itself.
 * occurrences(data, path) -> (count, last varint or None, (begin, end) or None)
 *     What protowire.values(data, path) yields: how many, the value
 *     last_varint would keep (None: no varint among them), and where the
 *     bytes last_string would keep are (None: no length-delimited one);
 *     None if the levels on the way are odd in any way (ask protowire).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 128
#define MAX_TABLES 256
#define MAX_ENTRIES 4096

typedef struct {
    uint64_t tag;
    int counted;
    int child;
} entry_t;

typedef struct {
    int first; /* index into entries */
    int count;
} table_t;

static entry_t walk_entries[MAX_ENTRIES];
static table_t walk_tables[MAX_TABLES];
static int walk_ntables = 0;

#define MAX_LEVELS 64
#define MAX_LEVEL_ENTRIES 256

typedef struct {
    entry_t entries[MAX_LEVEL_ENTRIES];
    table_t tables[MAX_LEVELS];
} levels_t;

/* A canonical varint of at most 9 bytes (63 bits) at data[*pos:end]: 0 on
 * success, -1 for anything else (cut short, longer, or past end). */
static inline int
read_varint(const unsigned char *data, Py_ssize_t *pos, Py_ssize_t end, uint64_t *out)
{
    uint64_t value = 0;
    int shift = 0;
    Py_ssize_t p = *pos;
    while (p < end && shift < 63) {
        unsigned char byte = data[p++];
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (byte < 0x80) {
            *pos = p;
            *out = value;
            return 0;
        }
        shift += 7;
    }
    return -1;
}

static int
load_tables(PyObject *spec, entry_t *entries, table_t *tables, int *ntables)
{
    if (!PyTuple_Check(spec)) {
        PyErr_SetString(PyExc_TypeError, "tables must be a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(spec);
    if (n < 1 || n > MAX_TABLES) {
        PyErr_SetString(PyExc_ValueError, "between 1 and 256 tables");
        return -1;
    }
    int used = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *table = PyTuple_GET_ITEM(spec, i);
        if (!PyTuple_Check(table)) {
            PyErr_SetString(PyExc_TypeError, "a table must be a tuple");
            return -1;
        }
        Py_ssize_t m = PyTuple_GET_SIZE(table);
        if (used + m > MAX_ENTRIES) {
            PyErr_SetString(PyExc_ValueError, "too many table entries");
            return -1;
        }
        tables[i].first = used;
        tables[i].count = (int)m;
        for (Py_ssize_t j = 0; j < m; j++) {
            unsigned long long tag;
            int counted, child;
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(table, j), "Kii", &tag, &counted, &child))
                return -1;
            if (child < -1 || child >= n || counted < -1 || counted > 3) {
                PyErr_SetString(PyExc_ValueError, "entry out of range");
                return -1;
            }
            entries[used].tag = tag;
            entries[used].counted = counted;
            entries[used].child = child;
            used++;
        }
    }
    *ntables = (int)n;
    return 0;
}

static PyObject *
configure_walk(PyObject *self, PyObject *spec)
{
    if (load_tables(spec, walk_entries, walk_tables, &walk_ntables) < 0) {
        walk_ntables = 0;
        return NULL;
    }
    Py_RETURN_NONE;
}

typedef struct {
    Py_ssize_t end;
    int table;
} frame_t;

static PyObject *
walk(PyObject *self, PyObject *args)
{
    Py_buffer view;
    unsigned long long caps[4];
    unsigned long long max_fields;
    if (!PyArg_ParseTuple(args, "y*(KKKK)K", &view, &caps[0], &caps[1], &caps[2], &caps[3],
                          &max_fields))
        return NULL;
    if (walk_ntables == 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "configure_walk() first");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)view.buf;
    Py_ssize_t pos = 0, end = view.len;
    unsigned long long counts[4] = {0, 0, 0, 0};
    unsigned long long fields = 0;
    uint64_t kind_number = 0;
    frame_t stack[MAX_DEPTH];
    int depth = 0;
    int table = 0;
    int ok = 0;

    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        while (pos < end) {
            uint64_t tag = data[pos];
            if (tag < 0x80) {
                pos++;
            } else if (read_varint(data, &pos, end, &tag) < 0 || tag > 0xFFFFFFFFu) {
                goto done;
            }
            if (++fields > max_fields)
                goto done;
            switch (tag & 7) {
            case 2: {
                uint64_t length;
                if (pos >= end)
                    goto done;
                length = data[pos];
                if (length < 0x80) {
                    pos++;
                } else if (read_varint(data, &pos, end, &length) < 0) {
                    goto done;
                }
                if (length > (uint64_t)(end - pos))
                    goto done;
                Py_ssize_t stop = pos + (Py_ssize_t)length;
                const table_t *t = &walk_tables[table];
                const entry_t *e = NULL;
                for (int i = 0; i < t->count; i++) {
                    if (walk_entries[t->first + i].tag == tag) {
                        e = &walk_entries[t->first + i];
                        break;
                    }
                }
                if (e == NULL) {
                    pos = stop;
                    break;
                }
                if (e->counted >= 0 && ++counts[e->counted] > caps[e->counted])
                    goto done;
                if (e->child < 0) {
                    pos = stop;
                    break;
                }
                if (depth >= MAX_DEPTH)
                    goto done;
                if (depth == 0)
                    kind_number = tag >> 3;
                stack[depth].end = end;
                stack[depth].table = table;
                depth++;
                table = e->child;
                end = stop;
                break;
            }
            case 0:
                if (pos >= end)
                    goto done;
                if (data[pos] < 0x80) {
                    pos++;
                } else {
                    uint64_t ignored;
                    if (read_varint(data, &pos, end, &ignored) < 0)
                        goto done;
                }
                break;
            case 5:
                pos += 4;
                break;
            case 1:
                pos += 8;
                break;
            default: /* groups and invalid wire types: the Python walk decides */
                goto done;
            }
        }
        if (pos > end)
            goto done;
        if (depth == 0) {
            ok = 1;
            goto done;
        }
        depth--;
        end = stack[depth].end;
        table = stack[depth].table;
    }
done:
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (!ok)
        Py_RETURN_NONE;
    return Py_BuildValue("(KKKKKK)", (unsigned long long)kind_number, counts[0], counts[1],
                         counts[2], counts[3], fields);
}

/* Whether iter_fields reads data[pos:end] and the levels below it without a fault. */
static int
level_sound(const levels_t *levels, const unsigned char *data, Py_ssize_t pos, Py_ssize_t end,
            int node, int depth)
{
    if (depth > MAX_DEPTH)
        return 0;
    const table_t *t = &levels->tables[node];
    while (pos < end) {
        uint64_t tag;
        if (read_varint(data, &pos, end, &tag) < 0)
            return 0;
        uint64_t number = tag >> 3;
        if (number == 0)
            return 0;
        switch (tag & 7) {
        case 0: {
            uint64_t ignored;
            if (read_varint(data, &pos, end, &ignored) < 0)
                return 0;
            break;
        }
        case 2: {
            uint64_t length;
            if (read_varint(data, &pos, end, &length) < 0)
                return 0;
            if (length > (uint64_t)(end - pos))
                return 0;
            Py_ssize_t stop = pos + (Py_ssize_t)length;
            for (int i = 0; i < t->count; i++) {
                const entry_t *e = &levels->entries[t->first + i];
                if (e->tag == number) {
                    if (!level_sound(levels, data, pos, stop, e->child, depth + 1))
                        return 0;
                    break;
                }
            }
            pos = stop;
            break;
        }
        case 5:
            pos += 4;
            break;
        case 1:
            pos += 8;
            break;
        default:
            return 0;
        }
        if (pos > end)
            return 0;
    }
    return 1;
}

static int
load_levels(PyObject *spec, levels_t *levels)
{
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 1 ||
        PyTuple_GET_SIZE(spec) > MAX_LEVELS) {
        PyErr_SetString(PyExc_ValueError, "levels: a tuple of 1 to 64 nodes");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(spec);
    int used = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *node = PyTuple_GET_ITEM(spec, i);
        if (!PyTuple_Check(node) || used + PyTuple_GET_SIZE(node) > MAX_LEVEL_ENTRIES) {
            PyErr_SetString(PyExc_ValueError, "levels: a node is a tuple (256 entries in all)");
            return -1;
        }
        levels->tables[i].first = used;
        levels->tables[i].count = (int)PyTuple_GET_SIZE(node);
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(node); j++) {
            unsigned long long number;
            int child;
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(node, j), "Ki", &number, &child))
                return -1;
            if (child < 0 || child >= n) {
                PyErr_SetString(PyExc_ValueError, "levels: child out of range");
                return -1;
            }
            levels->entries[used].tag = number;
            levels->entries[used].counted = 0;
            levels->entries[used].child = child;
            used++;
        }
    }
    return 0;
}

static PyObject *
levels_ok(PyObject *self, PyObject *args)
{
    Py_buffer view;
    PyObject *spec;
    levels_t levels;
    if (!PyArg_ParseTuple(args, "y*O", &view, &spec))
        return NULL;
    if (load_levels(spec, &levels) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int sound;
    Py_BEGIN_ALLOW_THREADS
    sound = level_sound(&levels, (const unsigned char *)view.buf, 0, view.len, 0, 0);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyBool_FromLong(sound);
}

/* protowire.values(data, path) in C: how many occurrences, and the last varint's
 * value (as last_varint keeps it). 0 on success, -1 for anything odd. */
typedef struct {
    uint64_t count;
    int has_varint;
    uint64_t last_varint;
    Py_ssize_t ld_begin; /* the last length-delimited occurrence's bytes, -1 if none */
    Py_ssize_t ld_end;
} found_t;

static int
occurrences_in(const unsigned char *data, Py_ssize_t pos, Py_ssize_t end,
               const uint64_t *path, int depth, int length, found_t *found)
{
    while (pos < end) {
        uint64_t tag, value = 0;
        if (read_varint(data, &pos, end, &tag) < 0)
            return -1;
        uint64_t number = tag >> 3;
        Py_ssize_t begin = pos;
        if (number == 0)
            return -1;
        switch (tag & 7) {
        case 0:
            if (read_varint(data, &pos, end, &value) < 0)
                return -1;
            break;
        case 2:
            if (read_varint(data, &pos, end, &value) < 0)
                return -1;
            if (value > (uint64_t)(end - pos))
                return -1;
            begin = pos;
            pos += (Py_ssize_t)value;
            break;
        case 5:
            pos += 4;
            break;
        case 1:
            pos += 8;
            break;
        default:
            return -1;
        }
        if (pos > end)
            return -1;
        if (number != path[depth])
            continue;
        if (depth + 1 == length) {
            found->count++;
            if ((tag & 7) == 0) {
                found->has_varint = 1;
                found->last_varint = value;
            } else if ((tag & 7) == 2) {
                found->ld_begin = begin;
                found->ld_end = pos;
            }
        } else if ((tag & 7) == 2) {
            if (occurrences_in(data, begin, pos, path, depth + 1, length, found) < 0)
                return -1;
        }
    }
    return 0;
}

static PyObject *
occurrences(PyObject *self, PyObject *args)
{
    Py_buffer view;
    PyObject *spec;
    uint64_t path[16];
    if (!PyArg_ParseTuple(args, "y*O!", &view, &PyTuple_Type, &spec))
        return NULL;
    Py_ssize_t length = PyTuple_GET_SIZE(spec);
    if (length < 1 || length > 16) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "a path of 1 to 16 field numbers");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < length; i++) {
        path[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(spec, i));
        if (PyErr_Occurred()) {
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    found_t found = {0, 0, 0, -1, -1};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = occurrences_in((const unsigned char *)view.buf, 0, view.len, path, 0, (int)length,
                        &found);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (rc < 0)
        Py_RETURN_NONE;
    PyObject *varint = found.has_varint
                           ? PyLong_FromUnsignedLongLong((unsigned long long)found.last_varint)
                           : Py_NewRef(Py_None);
    if (varint == NULL)
        return NULL;
    PyObject *span;
    if (found.ld_begin < 0)
        span = Py_NewRef(Py_None);
    else
        span = Py_BuildValue("(nn)", found.ld_begin, found.ld_end);
    if (span == NULL) {
        Py_DECREF(varint);
        return NULL;
    }
    return Py_BuildValue("(KNN)", (unsigned long long)found.count, varint, span);
}

static PyMethodDef methods[] = {
    {"configure_walk", configure_walk, METH_O, "Set the walk's tables."},
    {"walk", walk, METH_VARARGS, "The wire walk's counts, or None: ask the Python walk."},
    {"occurrences", occurrences, METH_VARARGS,
     "(count, last varint, last bytes' span) of the field at a path, or None."},
    {"levels_ok", levels_ok, METH_VARARGS, "Whether iter_fields reads the levels given."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_wirewalk", "The wire walk in C (optional accelerator).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__wirewalk(void)
{
    return PyModule_Create(&module);
}
