/* The replay feed's delivery loop (infra/feeds.py, ReplayFeed.poll with an engine sink).
 *
 * A backtest delivers about a million candles a year of 15 pairs, one per symbol per cycle.
 * The Python loop around each delivery (cursor bookkeeping, six list lookups per call, the
 * try/except around the candle step) cost about as much as the candle step and the sim's
 * bookkeeping together. This does the same walk in C and calls the same Python-visible
 * callables in the same order: per symbol (in the feed's order), every candle whose open
 * time is <= limit, oldest first: step(ts, o, h, lo, c, v); if the step raised BadTick,
 * bad(exc) and not the listener; else listener(symbol, ts, o, h, lo, c, v).
 *
 * The Python feed owns the data and loads each cursor's chunk (six lists of equal length);
 * this object only walks them. tests/infra/test_feeds.py runs both loops side by side.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject *symbol;
    PyObject *step;   /* NULL until bound */
    PyObject *listen; /* NULL: no listener */
    PyObject *cols[6];
    Py_ssize_t j; /* next undelivered row of the loaded chunk */
    Py_ssize_t m; /* rows in the loaded chunk */
} Cur;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    Cur *cur;
    PyObject *bad_type;
    PyObject *bad;
} Replay;

static void cur_clear_cols(Cur *c) {
    for (int k = 0; k < 6; k++) Py_CLEAR(c->cols[k]);
    c->j = c->m = 0;
}

static void replay_dealloc(Replay *self) {
    PyObject_GC_UnTrack(self);
    if (self->cur != NULL) {
        for (Py_ssize_t i = 0; i < self->n; i++) {
            Cur *c = &self->cur[i];
            Py_CLEAR(c->symbol);
            Py_CLEAR(c->step);
            Py_CLEAR(c->listen);
            cur_clear_cols(c);
        }
        PyMem_Free(self->cur);
    }
    Py_CLEAR(self->bad_type);
    Py_CLEAR(self->bad);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int replay_traverse(Replay *self, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Cur *c = &self->cur[i];
        Py_VISIT(c->step);
        Py_VISIT(c->listen);
    }
    Py_VISIT(self->bad_type);
    Py_VISIT(self->bad);
    return 0;
}

static int replay_clear(Replay *self) {
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Py_CLEAR(self->cur[i].step);
        Py_CLEAR(self->cur[i].listen);
    }
    Py_CLEAR(self->bad_type);
    Py_CLEAR(self->bad);
    return 0;
}

static PyObject *replay_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *symbols, *bad_type, *bad;
    static char *names[] = {"symbols", "bad_type", "bad", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OO:Replay", names, &PyTuple_Type, &symbols,
                                     &bad_type, &bad))
        return NULL;
    if (!PyType_Check(bad_type) || !PyCallable_Check(bad)) {
        PyErr_SetString(PyExc_TypeError, "Replay: bad_type must be a type and bad a callable");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(symbols);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(symbols, i))) {
            PyErr_SetString(PyExc_TypeError, "Replay: symbols must be strings");
            return NULL;
        }
    }
    Replay *self = (Replay *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->cur = PyMem_Calloc(n > 0 ? n : 1, sizeof(Cur));
    if (self->cur == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->n = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        self->cur[i].symbol = Py_NewRef(PyTuple_GET_ITEM(symbols, i));
    }
    self->bad_type = Py_NewRef(bad_type);
    self->bad = Py_NewRef(bad);
    return (PyObject *)self;
}

static Cur *cursor_at(Replay *self, PyObject *index) {
    Py_ssize_t i = PyLong_AsSsize_t(index);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0 || i >= self->n) {
        PyErr_Format(PyExc_IndexError, "Replay: no cursor %zd", i);
        return NULL;
    }
    return &self->cur[i];
}

/* bind(i, step, listener): the callables for cursor i (listener may be None). */
static PyObject *replay_bind(Replay *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "bind(i, step, listener)");
        return NULL;
    }
    Cur *c = cursor_at(self, args[0]);
    if (c == NULL) return NULL;
    if (!PyCallable_Check(args[1]) || (args[2] != Py_None && !PyCallable_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "bind: step must be callable, listener callable or None");
        return NULL;
    }
    Py_XSETREF(c->step, Py_NewRef(args[1]));
    Py_XSETREF(c->listen, args[2] == Py_None ? NULL : Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

/* load(i, j, ts, o, h, lo, c, v): cursor i walks these lists from row j. */
static PyObject *replay_load(Replay *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "load(i, j, ts, o, h, lo, c, v)");
        return NULL;
    }
    Cur *c = cursor_at(self, args[0]);
    if (c == NULL) return NULL;
    Py_ssize_t j = PyLong_AsSsize_t(args[1]);
    if (j == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t m = -1;
    for (int k = 0; k < 6; k++) {
        PyObject *col = args[2 + k];
        if (!PyList_CheckExact(col)) {
            PyErr_SetString(PyExc_TypeError, "load: columns must be lists");
            return NULL;
        }
        if (m == -1) m = PyList_GET_SIZE(col);
        if (PyList_GET_SIZE(col) != m) {
            PyErr_SetString(PyExc_ValueError, "load: columns differ in length");
            return NULL;
        }
    }
    if (j < 0 || j > m) {
        PyErr_Format(PyExc_IndexError, "load: row %zd outside a chunk of %zd", j, m);
        return NULL;
    }
    cur_clear_cols(c);
    for (int k = 0; k < 6; k++) c->cols[k] = Py_NewRef(args[2 + k]);
    c->j = j;
    c->m = m;
    Py_RETURN_NONE;
}

/* position(i) -> the row of the loaded chunk cursor i delivers next. */
static PyObject *replay_position(Replay *self, PyObject *index) {
    Cur *c = cursor_at(self, index);
    if (c == NULL) return NULL;
    return PyLong_FromSsize_t(c->j);
}

/* The step raised: BadTick goes to bad(exc) (returns 0), anything else stays raised (-1). */
static int refused(Replay *self) {
    if (!PyErr_ExceptionMatches(self->bad_type)) return -1;
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL) PyException_SetTraceback(v, tb);
    PyObject *r = PyObject_CallOneArg(self->bad, v);
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* poll(limit) -> (delivered, next_ts or None, ran_out): deliver every loaded row with
 * ts <= limit. next_ts is the smallest ts still undelivered in the loaded chunks; ran_out
 * lists the cursors whose chunk this call used up (the feed loads their next chunk, if
 * any, and polls again). */
static PyObject *replay_poll(Replay *self, PyObject *arg) {
    long long limit = PyLong_AsLongLong(arg);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t delivered = 0;
    long long best = 0;
    int have_best = 0;
    PyObject *ran_out = PyList_New(0);
    if (ran_out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Cur *c = &self->cur[i];
        Py_ssize_t j = c->j, m = c->m;
        if (j >= m) continue;
        if (c->step == NULL) {
            PyErr_Format(PyExc_RuntimeError, "Replay: cursor %zd has data but no step", i);
            goto fail;
        }
        PyObject **ts = ((PyListObject *)c->cols[0])->ob_item;
        PyObject **col[5];
        for (int k = 0; k < 5; k++) col[k] = ((PyListObject *)c->cols[k + 1])->ob_item;
        Py_ssize_t start = j;
        /* The callables may run arbitrary code; hold the chunk while they do. */
        PyObject *hold[6];
        for (int k = 0; k < 6; k++) hold[k] = Py_NewRef(c->cols[k]);
        int err = 0;
        while (j < m) {
            long long t = PyLong_AsLongLong(ts[j]);
            if (t == -1 && PyErr_Occurred()) {
                err = 1;
                break;
            }
            if (t > limit) {
                if (!have_best || t < best) {
                    best = t;
                    have_best = 1;
                }
                break;
            }
            /* args[1] is the symbol (listener only); the step gets args + 2. Each call
             * leaves the slot before its arguments free (PY_VECTORCALL_ARGUMENTS_OFFSET),
             * so a bound-method listener needs no copy of its arguments. */
            PyObject *args[8] = {NULL,      c->symbol, ts[j],     col[0][j],
                                 col[1][j], col[2][j], col[3][j], col[4][j]};
            PyObject *r =
                PyObject_Vectorcall(c->step, args + 2, 6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            j++;
            if (r == NULL) {
                if (refused(self) < 0) {
                    err = 1;
                    break;
                }
            } else {
                Py_DECREF(r);
                if (c->listen != NULL) {
                    r = PyObject_Vectorcall(c->listen, args + 1,
                                            7 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
                    if (r == NULL) {
                        err = 1;
                        break;
                    }
                    Py_DECREF(r);
                }
            }
            /* A callable may have reloaded this cursor; stop walking a chunk it replaced. */
            if (c->cols[0] != hold[0]) break;
        }
        int replaced = c->cols[0] != hold[0];
        for (int k = 0; k < 6; k++) Py_DECREF(hold[k]);
        if (!replaced) {
            delivered += j - start;
            c->j = j;
        }
        if (err) goto fail;
        if (!replaced && j >= m) {
            PyObject *idx = PyLong_FromSsize_t(i);
            if (idx == NULL || PyList_Append(ran_out, idx) < 0) {
                Py_XDECREF(idx);
                goto fail;
            }
            Py_DECREF(idx);
        }
    }
    PyObject *next = have_best ? PyLong_FromLongLong(best) : Py_NewRef(Py_None);
    if (next == NULL) goto fail;
    PyObject *out = Py_BuildValue("(nNN)", delivered, next, ran_out);
    return out;
fail:
    Py_DECREF(ran_out);
    return NULL;
}

static PyMethodDef replay_methods[] = {
    {"bind", (PyCFunction)(void (*)(void))replay_bind, METH_FASTCALL,
     "bind(i, step, listener): the callables cursor i delivers to"},
    {"load", (PyCFunction)(void (*)(void))replay_load, METH_FASTCALL,
     "load(i, j, ts, o, h, lo, c, v): the chunk cursor i walks, from row j"},
    {"position", (PyCFunction)replay_position, METH_O,
     "position(i) -> the next row cursor i delivers"},
    {"poll", (PyCFunction)replay_poll, METH_O,
     "poll(limit) -> (delivered, next_ts or None, ran_out)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReplayType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "infra._replay.Replay",
    .tp_basicsize = sizeof(Replay),
    .tp_dealloc = (destructor)replay_dealloc,
    .tp_traverse = (traverseproc)replay_traverse,
    .tp_clear = (inquiry)replay_clear,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The replay feed's delivery loop over loaded candle chunks.",
    .tp_methods = replay_methods,
    .tp_new = replay_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "infra._replay", .m_doc = "Replay delivery loop.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__replay(void) {
    if (PyType_Ready(&ReplayType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Replay", (PyObject *)&ReplayType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
