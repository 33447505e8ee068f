/* SimExchange.on_candle's everyday path, compiled (infra/exchange/sim.py has the reference).
 *
 * A backtest feeds the sim every candle of every pair: a million calls a year of 15 pairs,
 * and the Python call around four attribute stores cost more than the work. This does the
 * same bookkeeping on the same SymbolBook objects, with the same float operations in the same
 * order (built without FMA contraction): last_ts, history, spread_f, spread_ts; then the
 * Python matcher when the book holds orders. Anything unusual (an unknown symbol, a candle
 * that is not newer or not valid, arguments that are not int and floats) goes to the Python
 * on_candle, which raises exactly what it always raised. tests/infra/test_sim_candle.py feeds
 * both the same candles and compares the books.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <structmember.h>

enum { LAST_TS, HISTORY, PRICE_INC_F, SPREAD_F, SPREAD_TS, ORDERS, NSLOTS };
static const char *slot_names[NSLOTS] = {"last_ts",  "history",   "price_inc_f",
                                          "spread_f", "spread_ts", "orders"};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *books;     /* dict: symbol -> SymbolBook */
    PyTypeObject *book_type;
    PyObject *slow;      /* the Python on_candle */
    PyObject *match;     /* the Python _match(book, ts, o, h, lo, c, v) */
    PyObject *append;    /* interned "append" */
    double lo_k, hi_k;
    Py_ssize_t off[NSLOTS];
} Listener;

#define SLOT(obj, i) (*(PyObject **)((char *)(obj) + self->off[i]))

static PyObject *slow_path(Listener *self, PyObject *const *args, size_t nargsf) {
    return PyObject_Vectorcall(self->slow, args, nargsf, NULL);
}

static PyObject *listener_call(PyObject *callable, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames) {
    Listener *self = (Listener *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs != 7) return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
    PyObject *book = PyDict_GetItemWithError(self->books, args[0]);
    if (book == NULL) {
        if (PyErr_Occurred()) return NULL;
        return slow_path(self, args, nargsf); /* raises BadSymbol */
    }
    if (Py_TYPE(book) != self->book_type) return slow_path(self, args, nargsf);
    PyObject *ts = args[1];
    for (int k = 2; k < 7; k++) {
        if (!PyFloat_CheckExact(args[k])) return slow_path(self, args, nargsf);
    }
    PyObject *last_ts = SLOT(book, LAST_TS), *history = SLOT(book, HISTORY);
    PyObject *inc_obj = SLOT(book, PRICE_INC_F), *orders = SLOT(book, ORDERS);
    if (!PyLong_CheckExact(ts) || last_ts == NULL || !PyLong_CheckExact(last_ts) ||
        history == NULL || inc_obj == NULL || !PyFloat_CheckExact(inc_obj) || orders == NULL ||
        !PyList_CheckExact(orders))
        return slow_path(self, args, nargsf);
    int newer = PyObject_RichCompareBool(ts, last_ts, Py_GT);
    if (newer < 0) return NULL;
    double o = PyFloat_AS_DOUBLE(args[2]), h = PyFloat_AS_DOUBLE(args[3]);
    double l = PyFloat_AS_DOUBLE(args[4]), c = PyFloat_AS_DOUBLE(args[5]);
    double v = PyFloat_AS_DOUBLE(args[6]);
    if (!newer || !(0 < l && l <= o && o <= h && l <= c && c <= h && v >= 0))
        return slow_path(self, args, nargsf); /* raises ValueError with the usual message */

    PyObject *row = PyTuple_New(6);
    if (row == NULL) return NULL;
    for (int k = 0; k < 6; k++) PyTuple_SET_ITEM(row, k, Py_NewRef(args[1 + k]));
    PyObject *r = PyObject_CallMethodOneArg(history, self->append, row);
    Py_DECREF(row);
    if (r == NULL) return NULL;
    Py_DECREF(r);
    Py_XSETREF(SLOT(book, LAST_TS), Py_NewRef(ts));

    /* The universe screens every symbol's spread every cycle (float_spread_bps). */
    double inc = PyFloat_AS_DOUBLE(inc_obj);
    double bid = floor(c * self->lo_k / inc) * inc;
    double ask = ceil(c * self->hi_k / inc) * inc;
    if (bid <= 0) bid = inc;
    if (ask - bid < inc * 0.999999) ask = bid + inc;
    PyObject *spread = PyFloat_FromDouble((ask - bid) / ((ask + bid) * 0.5) * 10000.0);
    if (spread == NULL) return NULL;
    Py_XSETREF(SLOT(book, SPREAD_F), spread);
    Py_XSETREF(SLOT(book, SPREAD_TS), Py_NewRef(ts));

    orders = SLOT(book, ORDERS);
    if (orders != NULL && PyList_CheckExact(orders) && PyList_GET_SIZE(orders) > 0) {
        PyObject *margs[8] = {NULL, book, args[1], args[2], args[3], args[4], args[5], args[6]};
        return PyObject_Vectorcall(self->match, margs + 1, 7 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                   NULL);
    }
    return PyList_New(0);
}

static int listener_traverse(Listener *self, visitproc visit, void *arg) {
    Py_VISIT(self->books);
    Py_VISIT(self->book_type);
    Py_VISIT(self->slow);
    Py_VISIT(self->match);
    return 0;
}

static int listener_clear(Listener *self) {
    Py_CLEAR(self->books);
    Py_CLEAR(self->book_type);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->match);
    return 0;
}

static void listener_dealloc(Listener *self) {
    PyObject_GC_UnTrack(self);
    listener_clear(self);
    Py_CLEAR(self->append);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *listener_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *books, *book_type, *slow, *match;
    double lo_k, hi_k;
    static char *names[] = {"books", "book_type", "slow", "match", "lo_k", "hi_k", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O!OOdd:Listener", names, &PyDict_Type, &books,
                                     &PyType_Type, &book_type, &slow, &match, &lo_k, &hi_k))
        return NULL;
    if (!PyCallable_Check(slow) || !PyCallable_Check(match)) {
        PyErr_SetString(PyExc_TypeError, "Listener: slow and match must be callable");
        return NULL;
    }
    Py_ssize_t off[NSLOTS];
    for (int i = 0; i < NSLOTS; i++) {
        /* Each field must be a plain __slots__ member: its offset is where CPython keeps it. */
        PyObject *d = PyObject_GetAttrString(book_type, slot_names[i]);
        if (d == NULL) return NULL;
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX &&
                 !(((PyMemberDescrObject *)d)->d_member->flags & READONLY);
        if (ok) off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "Listener: %s.%s is not a writable __slots__ field",
                         ((PyTypeObject *)book_type)->tp_name, slot_names[i]);
            return NULL;
        }
    }
    Listener *self = (Listener *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->append = PyUnicode_InternFromString("append");
    if (self->append == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->vectorcall = listener_call;
    self->books = Py_NewRef(books);
    self->book_type = (PyTypeObject *)Py_NewRef(book_type);
    self->slow = Py_NewRef(slow);
    self->match = Py_NewRef(match);
    self->lo_k = lo_k;
    self->hi_k = hi_k;
    memcpy(self->off, off, sizeof(off));
    return (PyObject *)self;
}

static PyTypeObject ListenerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "infra.exchange._simcandle.Listener",
    .tp_basicsize = sizeof(Listener),
    .tp_dealloc = (destructor)listener_dealloc,
    .tp_traverse = (traverseproc)listener_traverse,
    .tp_clear = (inquiry)listener_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Listener, vectorcall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "SimExchange.on_candle, compiled: listener(symbol, ts, o, h, lo, c, v) -> fills.",
    .tp_new = listener_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "infra.exchange._simcandle",
    .m_doc = "The sim's per-candle bookkeeping.", .m_size = -1,
};

PyMODINIT_FUNC PyInit__simcandle(void) {
    if (PyType_Ready(&ListenerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Listener", (PyObject *)&ListenerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
