/* The per-candle indicator step of core/features.py, compiled.
 *
 * It must give bit-identical results to the generated Python step (_pusher_source): every
 * update below is the same float operations in the same order as its Python template, and
 * the build turns off contraction into fused multiply-adds (-ffp-contract=off). The Python
 * step stays the reference and the fallback; tests/core/test_candlestep.py compares the two
 * candle by candle. Bad candles are refused through the `reject` callback so that the
 * exception and its message come from Python, exactly as the generated step raises them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#define RESUM_EVERY 4096

enum { K_EMA, K_ATR, K_RSI, K_HH, K_LL, K_PEAK, K_VAVG, K_QVOL, K_MED, K_ROC };

typedef struct {
    double *buf;
    Py_ssize_t cap, start, len;
} Ring; /* deque(maxlen=cap) of doubles */

typedef struct {
    long long *idx;
    double *val;
    Py_ssize_t cap, start, len;
} Mono; /* the monotonic deque of (bar index, value) behind hh/ll/peak */

typedef struct {
    int kind;
    long long p;
    PyObject *key;
    int has; /* e is not None */
    double e;
    double s;    /* ema/atr: warm-up sum; vavg/qvol: running sum */
    long long n; /* ema/atr/rsi: warm-up count */
    double rg, rl;
    double a; /* ema: 2 / (p + 1) */
    Ring vb;
    double *so; /* med: the window, sorted */
    Py_ssize_t so_len;
    Mono dq;
} Ind;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *symbol, *latest, *features_type, *reject, *fsum, *prev_vals;
    Ind *ind;
    Py_ssize_t n_ind;
    int has_pc;
    double pc;
    long long bi, last_ts;
} Step;

static int ring_init(Ring *r, Py_ssize_t cap) {
    r->buf = PyMem_Calloc((size_t)cap, sizeof(double));
    r->cap = cap;
    r->start = r->len = 0;
    return r->buf ? 0 : -1;
}

static inline double ring_front(Ring *r) { return r->buf[r->start]; }

static inline void ring_push(Ring *r, double x) {
    if (r->len == r->cap) {
        r->start = (r->start + 1) % r->cap;
        r->len--;
    }
    r->buf[(r->start + r->len) % r->cap] = x;
    r->len++;
}

static int mono_init(Mono *m, Py_ssize_t cap) {
    m->idx = PyMem_Calloc((size_t)cap, sizeof(long long));
    m->val = PyMem_Calloc((size_t)cap, sizeof(double));
    m->cap = cap;
    m->start = m->len = 0;
    return (m->idx && m->val) ? 0 : -1;
}

static inline Py_ssize_t mono_at(Mono *m, Py_ssize_t i) { return (m->start + i) % m->cap; }

static inline void mono_push(Mono *m, long long i, double v) {
    Py_ssize_t at = mono_at(m, m->len);
    m->idx[at] = i;
    m->val[at] = v;
    m->len++;
}

static inline void mono_popleft(Mono *m) {
    m->start = (m->start + 1) % m->cap;
    m->len--;
}

/* fsum(vb) exactly as Python computes it: the window is copied into a list and passed to
 * math.fsum. Runs once every RESUM_EVERY candles. */
static int ring_fsum(Step *self, Ring *r, double *out) {
    PyObject *lst = PyList_New(r->len);
    if (!lst) return -1;
    for (Py_ssize_t i = 0; i < r->len; i++) {
        PyObject *x = PyFloat_FromDouble(r->buf[(r->start + i) % r->cap]);
        if (!x) {
            Py_DECREF(lst);
            return -1;
        }
        PyList_SET_ITEM(lst, i, x);
    }
    PyObject *s = PyObject_CallOneArg(self->fsum, lst);
    Py_DECREF(lst);
    if (!s) return -1;
    *out = PyFloat_AsDouble(s);
    Py_DECREF(s);
    return PyErr_Occurred() ? -1 : 0;
}

static inline double rsi_of(double gain, double loss) {
    if (loss == 0.0) return gain > 0 ? 100.0 : 50.0;
    return 100.0 - 100.0 / (1.0 + gain / loss);
}

static PyObject *step_call(PyObject *callable, PyObject *const *a, size_t nargsf,
                           PyObject *kwnames);

static void step_dealloc(Step *self) {
    for (Py_ssize_t i = 0; i < self->n_ind; i++) {
        Ind *d = &self->ind[i];
        Py_XDECREF(d->key);
        PyMem_Free(d->vb.buf);
        PyMem_Free(d->so);
        PyMem_Free(d->dq.idx);
        PyMem_Free(d->dq.val);
    }
    PyMem_Free(self->ind);
    Py_XDECREF(self->symbol);
    Py_XDECREF(self->latest);
    Py_XDECREF(self->features_type);
    Py_XDECREF(self->reject);
    Py_XDECREF(self->fsum);
    Py_XDECREF(self->prev_vals);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Step(symbol, latest, specs, features_type, reject, fsum, empty)
 * specs: sequence of (kind code, period, key) in the order of the bank's keys. */
static PyObject *step_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *symbol, *latest, *specs, *features_type, *reject, *fsum, *empty;
    if (!PyArg_ParseTuple(args, "OO!OOOOO", &symbol, &PyDict_Type, &latest, &specs,
                          &features_type, &reject, &fsum, &empty))
        return NULL;
    PyObject *seq = PySequence_Fast(specs, "specs must be a sequence");
    if (!seq) return NULL;
    Step *self = (Step *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(seq);
        return NULL;
    }
    Py_INCREF(symbol);
    self->symbol = symbol;
    Py_INCREF(latest);
    self->latest = latest;
    Py_INCREF(features_type);
    self->features_type = features_type;
    Py_INCREF(reject);
    self->reject = reject;
    Py_INCREF(fsum);
    self->fsum = fsum;
    Py_INCREF(empty);
    self->prev_vals = empty;
    self->vectorcall = step_call;
    self->last_ts = -1;
    self->n_ind = PySequence_Fast_GET_SIZE(seq);
    self->ind = PyMem_Calloc((size_t)(self->n_ind ? self->n_ind : 1), sizeof(Ind));
    if (!self->ind) goto nomem;
    for (Py_ssize_t i = 0; i < self->n_ind; i++) {
        Ind *d = &self->ind[i];
        long long p;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iLO", &d->kind, &p, &d->key))
            goto fail;
        Py_INCREF(d->key);
        if (p < 1) {
            PyErr_SetString(PyExc_ValueError, "period must be at least 1");
            goto fail;
        }
        d->p = p;
        switch (d->kind) {
        case K_EMA:
            d->a = 2.0 / (double)(p + 1);
            break;
        case K_ATR:
        case K_RSI:
            break;
        case K_HH:
        case K_LL:
        case K_PEAK:
            if (mono_init(&d->dq, (Py_ssize_t)p + 2) < 0) goto nomem;
            break;
        case K_VAVG:
        case K_QVOL:
            if (ring_init(&d->vb, (Py_ssize_t)p) < 0) goto nomem;
            break;
        case K_MED:
            if (ring_init(&d->vb, (Py_ssize_t)p) < 0) goto nomem;
            d->so = PyMem_Calloc((size_t)p + 1, sizeof(double));
            if (!d->so) goto nomem;
            break;
        case K_ROC:
            if (ring_init(&d->vb, (Py_ssize_t)p + 1) < 0) goto nomem;
            break;
        default:
            PyErr_Format(PyExc_ValueError, "unknown indicator kind %d", d->kind);
            goto fail;
        }
    }
    Py_DECREF(seq);
    return (PyObject *)self;
nomem:
    PyErr_NoMemory();
fail:
    Py_DECREF(seq);
    Py_DECREF(self);
    return NULL;
}

/* bisect_left / bisect_right on a sorted array */
static inline Py_ssize_t lower(const double *a, Py_ssize_t n, double x) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static inline Py_ssize_t upper(const double *a, Py_ssize_t n, double x) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (x < a[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

static PyObject *refuse(Step *self, const char *why, PyObject *const *args) {
    PyObject *r = PyObject_CallFunction(self->reject, "sOLOOOOOO", why, self->symbol,
                                        self->last_ts, args[0], args[1], args[2], args[3],
                                        args[4], args[5]);
    Py_XDECREF(r);
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "reject() returned instead of raising");
    return NULL;
}

static PyObject *step_call(PyObject *callable, PyObject *const *a, size_t nargsf,
                           PyObject *kwnames) {
    Step *self = (Step *)callable;
    if (kwnames && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "the candle step takes positional arguments only");
        return NULL;
    }
    if (PyVectorcall_NARGS(nargsf) != 6) {
        PyErr_SetString(PyExc_TypeError, "the candle step takes (ts, o, h, lo, c, v)");
        return NULL;
    }
    long long ts = PyLong_AsLongLong(a[0]);
    if (ts == -1 && PyErr_Occurred()) return NULL;
    double o = PyFloat_AsDouble(a[1]), h = PyFloat_AsDouble(a[2]), lo = PyFloat_AsDouble(a[3]);
    double c = PyFloat_AsDouble(a[4]), v = PyFloat_AsDouble(a[5]);
    if (PyErr_Occurred()) return NULL;

    if (ts <= self->last_ts)
        return refuse(self, ts == self->last_ts ? "DUPLICATE_CANDLE" : "OUT_OF_ORDER_CANDLE", a);
    if (!(0.0 < lo && lo <= h && h < INFINITY && lo <= o && o <= h && lo <= c && c <= h))
        return refuse(self, "BAD_PRICE", a);
    if (!(0.0 <= v && v < INFINITY)) return refuse(self, "BAD_VOLUME", a);

    const int has_pc = self->has_pc;
    const double pc = self->pc;
    const long long bi = self->bi;
    const int resum = (bi + 1) % RESUM_EVERY == 0;
    double tr = 0.0, gain = 0.0, loss = 0.0;
    {
        double hl = h - lo;
        tr = hl;
        if (has_pc) {
            double up = fabs(h - pc), dn = fabs(lo - pc);
            if (up > tr) tr = up; /* max() keeps the first of equals: same value */
            if (dn > tr) tr = dn;
        }
        double ch = has_pc ? c - pc : 0.0;
        gain = ch > 0 ? ch : 0.0;
        loss = ch < 0 ? -ch : 0.0;
    }
    const double qv = c * v;

    for (Py_ssize_t i = 0; i < self->n_ind; i++) {
        Ind *d = &self->ind[i];
        const long long p = d->p;
        switch (d->kind) {
        case K_EMA:
            if (d->has) d->e = d->e + d->a * (c - d->e);
            else {
                d->n += 1;
                d->s += c;
                if (d->n == p) {
                    d->e = d->s / (double)p;
                    d->has = 1;
                }
            }
            break;
        case K_ATR:
            if (d->has) d->e = (d->e * (double)(p - 1) + tr) / (double)p;
            else {
                d->n += 1;
                d->s += tr;
                if (d->n == p) {
                    d->e = d->s / (double)p;
                    d->has = 1;
                }
            }
            break;
        case K_RSI:
            if (has_pc) {
                if (d->n < p) {
                    d->n += 1;
                    d->rg += gain;
                    d->rl += loss;
                    if (d->n == p) {
                        d->rg /= (double)p;
                        d->rl /= (double)p;
                        d->e = rsi_of(d->rg, d->rl);
                        d->has = 1;
                    }
                } else {
                    d->rg = (d->rg * (double)(p - 1) + gain) / (double)p;
                    d->rl = (d->rl * (double)(p - 1) + loss) / (double)p;
                    d->e = rsi_of(d->rg, d->rl);
                    d->has = 1;
                }
            }
            break;
        case K_HH:
        case K_LL: {
            Mono *m = &d->dq;
            const double x = d->kind == K_HH ? h : lo;
            if (bi >= p) {
                d->e = m->val[m->start];
                d->has = 1;
            } else d->has = 0;
            if (d->kind == K_HH)
                while (m->len && m->val[mono_at(m, m->len - 1)] <= x) m->len--;
            else
                while (m->len && m->val[mono_at(m, m->len - 1)] >= x) m->len--;
            mono_push(m, bi, x);
            if (m->idx[m->start] <= bi - p) mono_popleft(m);
            break;
        }
        case K_PEAK: {
            Mono *m = &d->dq;
            while (m->len && m->val[mono_at(m, m->len - 1)] <= c) m->len--;
            mono_push(m, bi, c);
            if (m->idx[m->start] <= bi - p) mono_popleft(m);
            if (bi + 1 >= p) {
                d->e = m->val[m->start];
                d->has = 1;
            } else d->has = 0;
            break;
        }
        case K_VAVG: {
            Ring *r = &d->vb;
            if (r->len == p) {
                d->e = d->s / (double)p;
                if (d->e < 0.0) d->e = 0.0;
                d->has = 1;
                d->s -= ring_front(r);
            }
            ring_push(r, v);
            if (resum) {
                if (ring_fsum(self, r, &d->s) < 0) return NULL;
            } else d->s += v;
            break;
        }
        case K_QVOL: {
            Ring *r = &d->vb;
            if (r->len == p) d->s -= ring_front(r);
            ring_push(r, qv);
            if (resum) {
                if (ring_fsum(self, r, &d->s) < 0) return NULL;
            } else d->s += qv;
            if (r->len == p) {
                d->e = d->s > 0.0 ? d->s : 0.0;
                d->has = 1;
            }
            break;
        }
        case K_MED: {
            Ring *r = &d->vb;
            if (r->len == p) {
                const Py_ssize_t mid = (Py_ssize_t)(p / 2);
                d->e = (p % 2) ? d->so[mid] : (d->so[mid - 1] + d->so[mid]) / 2.0;
                d->has = 1;
                Py_ssize_t at = lower(d->so, d->so_len, ring_front(r));
                memmove(d->so + at, d->so + at + 1, (size_t)(d->so_len - at - 1) * sizeof(double));
                d->so_len--;
            }
            ring_push(r, c);
            Py_ssize_t at = upper(d->so, d->so_len, c);
            memmove(d->so + at + 1, d->so + at, (size_t)(d->so_len - at) * sizeof(double));
            d->so[at] = c;
            d->so_len++;
            break;
        }
        case K_ROC: {
            Ring *r = &d->vb;
            ring_push(r, c);
            if (r->len == p + 1) {
                d->e = c / ring_front(r) - 1.0;
                d->has = 1;
            }
            break;
        }
        }
    }

    PyObject *vals = _PyDict_NewPresized(self->n_ind);
    if (!vals) return NULL;
    for (Py_ssize_t i = 0; i < self->n_ind; i++) {
        Ind *d = &self->ind[i];
        PyObject *x;
        if (d->has) {
            x = PyFloat_FromDouble(d->e);
            if (!x) goto fail_vals;
        } else {
            x = Py_None;
            Py_INCREF(x);
        }
        int rc = PyDict_SetItem(vals, d->key, x);
        Py_DECREF(x);
        if (rc < 0) goto fail_vals;
    }
    PyObject *bars = PyLong_FromLongLong(bi + 1);
    if (!bars) goto fail_vals;
    /* What tuple.__new__(SymbolFeatures, items) does (tuple_subtype_new), without the
     * intermediate tuple: allocate the subtype with 10 slots and fill them. */
    PyTypeObject *ft = (PyTypeObject *)self->features_type;
    PyObject *f = ft->tp_alloc(ft, 10);
    if (!f) {
        Py_DECREF(bars);
        goto fail_vals;
    }
    Py_INCREF(self->symbol);
    PyTuple_SET_ITEM(f, 0, self->symbol);
    for (int k = 0; k < 6; k++) {
        Py_INCREF(a[k]);
        PyTuple_SET_ITEM(f, k + 1, a[k]);
    }
    Py_INCREF(vals);
    PyTuple_SET_ITEM(f, 7, vals);
    Py_INCREF(self->prev_vals);
    PyTuple_SET_ITEM(f, 8, self->prev_vals);
    PyTuple_SET_ITEM(f, 9, bars);
    if (PyDict_SetItem(self->latest, self->symbol, f) < 0) {
        Py_DECREF(f);
        goto fail_vals;
    }
    /* Commit the candle only now that nothing can fail. */
    self->has_pc = 1;
    self->pc = c;
    self->bi = bi + 1;
    self->last_ts = ts;
    Py_SETREF(self->prev_vals, vals);
    return f;
fail_vals:
    Py_DECREF(vals);
    return NULL;
}

static PyTypeObject StepType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "core._candlestep.Step",
    .tp_basicsize = sizeof(Step),
    .tp_dealloc = (destructor)step_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Step, vectorcall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "One symbol's compiled candle step: (ts, o, h, lo, c, v) -> SymbolFeatures.",
    .tp_new = step_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "core._candlestep",
    "Compiled per-candle indicator step (see core/features.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__candlestep(void) {
    if (PyType_Ready(&StepType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&StepType);
    if (PyModule_AddObject(m, "Step", (PyObject *)&StepType) < 0) {
        Py_DECREF(&StepType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "EMA", K_EMA);
    PyModule_AddIntConstant(m, "ATR", K_ATR);
    PyModule_AddIntConstant(m, "RSI", K_RSI);
    PyModule_AddIntConstant(m, "HH", K_HH);
    PyModule_AddIntConstant(m, "LL", K_LL);
    PyModule_AddIntConstant(m, "PEAK", K_PEAK);
    PyModule_AddIntConstant(m, "VAVG", K_VAVG);
    PyModule_AddIntConstant(m, "QVOL", K_QVOL);
    PyModule_AddIntConstant(m, "MED", K_MED);
    PyModule_AddIntConstant(m, "ROC", K_ROC);
    return m;
}
