#ifndef FROST_CPYTHON_SHIM_H
#define FROST_CPYTHON_SHIM_H
/* features.h first, or the module clashes with Glibc's (fds_bits ... not present). */
#include <features.h>
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <marshal.h>
#include <frameobject.h>

/* Macros and static inline helpers that Swift cannot call or see directly. */

static inline PyObject *frost_none(void) { return Py_None; }
static inline PyObject *frost_true(void) { return Py_True; }
static inline PyObject *frost_false(void) { return Py_False; }
static inline PyObject *frost_not_implemented(void) { return Py_NotImplemented; }

static inline void frost_incref(PyObject *o) { Py_INCREF(o); }
static inline void frost_decref(PyObject *o) { Py_DECREF(o); }
static inline void frost_xdecref(PyObject *o) { Py_XDECREF(o); }
static inline Py_ssize_t frost_refcount(PyObject *o) { return Py_REFCNT(o); }

static inline PyTypeObject *frost_type(PyObject *o) { return Py_TYPE(o); }
static inline PyObject *frost_type_object(PyObject *o) { return (PyObject *)Py_TYPE(o); }
static inline const char *frost_type_name(PyObject *o) { return Py_TYPE(o)->tp_name; }

static inline int frost_is_str(PyObject *o) { return PyUnicode_Check(o); }
static inline int frost_is_bytes(PyObject *o) { return PyBytes_Check(o); }
static inline int frost_is_int(PyObject *o) { return PyLong_Check(o); }
static inline int frost_is_bool(PyObject *o) { return PyBool_Check(o); }
static inline int frost_is_tuple(PyObject *o) { return PyTuple_Check(o); }
static inline int frost_is_list(PyObject *o) { return PyList_Check(o); }
static inline int frost_is_dict(PyObject *o) { return PyDict_Check(o); }
static inline int frost_is_code(PyObject *o) { return PyCode_Check(o); }
static inline int frost_is_float(PyObject *o) { return PyFloat_Check(o); }

/* Native objects defined from Swift carry one pointer (an retained Swift object) after
   the PyObject header. */
typedef struct {
    PyObject_HEAD
    void *payload;
} FrostNativeObject;

static inline Py_ssize_t frost_native_basicsize(void) { return (Py_ssize_t)sizeof(FrostNativeObject); }
static inline void *frost_native_payload(PyObject *o) { return ((FrostNativeObject *)o)->payload; }
static inline void frost_native_set_payload(PyObject *o, void *p) { ((FrostNativeObject *)o)->payload = p; }

/* tp_dealloc for heap types: free the object and drop the reference it held on its type. */
static inline void frost_native_free(PyObject *o) {
    PyTypeObject *type = Py_TYPE(o);
    type->tp_free(o);
    Py_DECREF(type);
}

static inline PyObject *frost_native_alloc(PyTypeObject *type) {
    return type->tp_alloc(type, 0);
}

/* A PyModuleDef needs PyModuleDef_HEAD_INIT; it must live as long as the module. */
static inline PyModuleDef *frost_module_def_new(const char *name, const char *doc, PyMethodDef *methods) {
    PyModuleDef *def = (PyModuleDef *)PyMem_RawCalloc(1, sizeof(PyModuleDef));
    PyModuleDef init = { PyModuleDef_HEAD_INIT, name, doc, -1, methods, NULL, NULL, NULL, NULL };
    *def = init;
    return def;
}

/* Whether the calling OS thread holds the GIL. Thread states are only ever used on the
   thread that created them, so the current holder's thread id identifies the thread. */
static inline int frost_gil_held_by_this_thread(void) {
    PyThreadState *t = _PyThreadState_UncheckedGet();
    return t != NULL && t->thread_id == PyThread_get_thread_ident();
}

typedef PyObject *(*FrostFastCall)(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
static inline PyCFunction frost_as_pycfunction(FrostFastCall f) { return (PyCFunction)(void (*)(void))f; }
static inline Py_ssize_t frost_vectorcall_nargs(Py_ssize_t n) { return PyVectorcall_NARGS((size_t)n); }

/* Methods of native types (tp_methods). A PyMethodDef carries no closure, so each method
   needs its own C function: a fixed table of trampolines forwards slot i to one Swift
   dispatcher (frost_native_slot_dispatch, defined in FrostPython), which finds the method
   registered for that slot. 128 slots: every native type's methods together. */
PyObject *frost_native_slot_dispatch(int slot, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames);
#define FROST_SLOT_AT(name, value) \
    static PyObject *frost_slot_##name(PyObject *s, PyObject *const *a, Py_ssize_t n, PyObject *k) { \
        return frost_native_slot_dispatch((value), s, a, n, k); }
#define FROST_SLOTS8(p, v) FROST_SLOT_AT(p##0, (v)*8+0) FROST_SLOT_AT(p##1, (v)*8+1) FROST_SLOT_AT(p##2, (v)*8+2) \
    FROST_SLOT_AT(p##3, (v)*8+3) FROST_SLOT_AT(p##4, (v)*8+4) FROST_SLOT_AT(p##5, (v)*8+5) \
    FROST_SLOT_AT(p##6, (v)*8+6) FROST_SLOT_AT(p##7, (v)*8+7)
FROST_SLOTS8(a, 0)
FROST_SLOTS8(b, 1)
FROST_SLOTS8(c, 2)
FROST_SLOTS8(d, 3)
FROST_SLOTS8(e, 4)
FROST_SLOTS8(f, 5)
FROST_SLOTS8(g, 6)
FROST_SLOTS8(h, 7)
FROST_SLOTS8(i, 8)
FROST_SLOTS8(j, 9)
FROST_SLOTS8(k, 10)
FROST_SLOTS8(l, 11)
FROST_SLOTS8(m, 12)
FROST_SLOTS8(n, 13)
FROST_SLOTS8(o, 14)
FROST_SLOTS8(p, 15)
#define FROST_SLOT_NAMES8(p) frost_slot_##p##0, frost_slot_##p##1, frost_slot_##p##2, frost_slot_##p##3, \
    frost_slot_##p##4, frost_slot_##p##5, frost_slot_##p##6, frost_slot_##p##7
static inline int frost_native_slot_count(void) { return 128; }
static inline PyCFunction frost_native_slot(int slot) {
    static FrostFastCall const table[128] = {
        FROST_SLOT_NAMES8(a),
        FROST_SLOT_NAMES8(b),
        FROST_SLOT_NAMES8(c),
        FROST_SLOT_NAMES8(d),
        FROST_SLOT_NAMES8(e),
        FROST_SLOT_NAMES8(f),
        FROST_SLOT_NAMES8(g),
        FROST_SLOT_NAMES8(h),
        FROST_SLOT_NAMES8(i),
        FROST_SLOT_NAMES8(j),
        FROST_SLOT_NAMES8(k),
        FROST_SLOT_NAMES8(l),
        FROST_SLOT_NAMES8(m),
        FROST_SLOT_NAMES8(n),
        FROST_SLOT_NAMES8(o),
        FROST_SLOT_NAMES8(p),
    };
    return (PyCFunction)(void (*)(void))table[slot];
}

/* Getters and setters of native types' attributes (tp_getset), with the closure pointer
   naming the attribute. */
typedef PyObject *(*FrostGetter)(PyObject *self, void *closure);
typedef int (*FrostSetter)(PyObject *self, PyObject *value, void *closure);

static inline int frost_is_initialized_status_error(PyStatus status) { return PyStatus_Exception(status); }

static inline unsigned long frost_native_type_flags(void) {
    return Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE;
}
static inline int frost_python_api_version(void) { return PYTHON_API_VERSION; }
static inline PyObject *frost_module_create(PyModuleDef *def) { return PyModule_Create2(def, PYTHON_API_VERSION); }

static inline PyObject *frost_call1(PyObject *callable, PyObject *arg) {
    PyObject *args = PyTuple_Pack(1, arg);
    if (args == NULL) return NULL;
    PyObject *result = PyObject_Call(callable, args, NULL);
    Py_DECREF(args);
    return result;
}

/* PyTuple_Pack is variadic. */
static inline PyObject *PyTuple_Pack3(PyObject *a, PyObject *b, PyObject *c) { return PyTuple_Pack(3, a, b, c); }

static inline long frost_python_version_hex(void) { return PY_VERSION_HEX; }
static inline int frost_python_major(void) { return PY_MAJOR_VERSION; }
static inline int frost_python_minor(void) { return PY_MINOR_VERSION; }
#endif
