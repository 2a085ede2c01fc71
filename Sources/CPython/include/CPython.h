#ifndef FROST_CPYTHON_H
#define FROST_CPYTHON_H
/* The CPython C API as the loader uses it, for every supported version (3.10-3.13).
 *
 * The loader links no libpython: it loads the bundle's with frost_python_load, and every
 * function below is a small trampoline that calls the loaded library's symbol. So this
 * header declares its own types instead of including <Python.h>, and keeps to what every
 * supported version lays out alike: the stable ABI (PyObject's header, PyMethodDef,
 * PyGetSetDef, PyType_Spec, PyModuleDef, the slot and flag numbers) plus a few functions
 * every version exports with the same signature (initialisation config, marshal,
 * compilation). Version-specific layout - PyConfig's fields - is described by
 * frost_python_config_layout, per minor version. Nothing here may read a struct the stable
 * ABI keeps opaque, with one exception named where it is used (a type's tp_name). */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <wchar.h>

typedef ssize_t Py_ssize_t;

/* PyObject's header, as the stable ABI fixes it (not for free-threaded builds, which
   frost refuses). */
typedef struct _object {
    Py_ssize_t ob_refcnt;
    struct _typeobject *ob_type;
} PyObject;
typedef struct _typeobject PyTypeObject;
typedef struct _ts PyThreadState;
typedef struct _is PyInterpreterState;
typedef struct PyConfig PyConfig;
typedef struct PyCompilerFlags PyCompilerFlags;

typedef PyObject *(*PyCFunction)(PyObject *, PyObject *);
typedef PyObject *(*getter)(PyObject *, void *);
typedef int (*setter)(PyObject *, PyObject *, void *);

typedef struct PyMethodDef {
    const char *ml_name;
    PyCFunction ml_meth;
    int ml_flags;
    const char *ml_doc;
} PyMethodDef;

typedef struct PyGetSetDef {
    const char *name;
    getter get;
    setter set;
    const char *doc;
    void *closure;
} PyGetSetDef;

typedef struct { int slot; void *pfunc; } PyType_Slot;
typedef struct {
    const char *name;
    int basicsize;
    int itemsize;
    unsigned int flags;
    PyType_Slot *slots;
} PyType_Spec;

typedef struct PyModuleDef_Base {
    PyObject ob_base;
    PyObject *(*m_init)(void);
    Py_ssize_t m_index;
    PyObject *m_copy;
} PyModuleDef_Base;
typedef struct PyModuleDef {
    PyModuleDef_Base m_base;
    const char *m_name;
    const char *m_doc;
    Py_ssize_t m_size;
    PyMethodDef *m_methods;
    void *m_slots;
    void *m_traverse;
    void *m_clear;
    void *m_free;
} PyModuleDef;

/* Initialisation: the same in 3.8-3.13 (PyConfig itself is not: see the layout below). */
typedef struct {
    int _type;
    const char *func;
    const char *err_msg;
    int exitcode;
} PyStatus;
typedef struct {
    Py_ssize_t length;
    wchar_t **items;
} PyWideStringList;
typedef struct {
    int _config_init, parse_argv, isolated, use_environment, configure_locale, coerce_c_locale,
        coerce_c_locale_warn, utf8_mode, dev_mode, allocator;
} PyPreConfig;

typedef enum { PyGILState_LOCKED, PyGILState_UNLOCKED } PyGILState_STATE;

#define Py_tp_alloc 47
#define Py_tp_call 50
#define Py_tp_dealloc 52
#define Py_tp_doc 56
#define Py_tp_iter 62
#define Py_tp_iternext 63
#define Py_tp_methods 64
#define Py_tp_repr 66
#define Py_tp_getset 73
#define Py_tp_free 74
#define Py_single_input 256
#define Py_file_input 257
#define Py_eval_input 258
#define METH_VARARGS 0x0001
#define METH_KEYWORDS 0x0002
#define METH_NOARGS 0x0004
#define METH_O 0x0008
#define METH_FASTCALL 0x0080
/* PyObject_Vectorcall* nargsf: the callee may use args[-1] (saves a tuple when it binds self). */
#define PY_VECTORCALL_ARGUMENTS_OFFSET ((size_t)1 << (8 * sizeof(size_t) - 1))
#define FROST_TPFLAGS_DISALLOW_INSTANTIATION (1UL << 7)
#define FROST_TPFLAGS_IMMUTABLETYPE (1UL << 8)
#define FROST_TPFLAGS_HAVE_VERSION_TAG (1UL << 18)
#define FROST_TPFLAGS_LONG_SUBCLASS (1UL << 24)
#define FROST_TPFLAGS_LIST_SUBCLASS (1UL << 25)
#define FROST_TPFLAGS_TUPLE_SUBCLASS (1UL << 26)
#define FROST_TPFLAGS_BYTES_SUBCLASS (1UL << 27)
#define FROST_TPFLAGS_UNICODE_SUBCLASS (1UL << 28)
#define FROST_TPFLAGS_DICT_SUBCLASS (1UL << 29)
#define FROST_PYTHON_API_VERSION 1013

/* Every function the loader calls: F(return type, name, symbol, parameters, arguments);
   V(...) for those returning void. The name is the symbol's unless the symbol is outside
   the limited API (then frost_ in front, so that it reads as what it is). */
#define FROST_PYTHON_FUNCTIONS(F, V) \
    F(int, Py_IsInitialized, Py_IsInitialized, (void), ()) \
    F(const char *, Py_GetVersion, Py_GetVersion, (void), ()) \
    F(int, Py_FinalizeEx, Py_FinalizeEx, (void), ()) \
    F(PyStatus, Py_PreInitialize, Py_PreInitialize, (const PyPreConfig *c), (c)) \
    V(PyPreConfig_InitIsolatedConfig, PyPreConfig_InitIsolatedConfig, (PyPreConfig *c), (c)) \
    V(PyConfig_InitIsolatedConfig, PyConfig_InitIsolatedConfig, (PyConfig *c), (c)) \
    V(PyConfig_Clear, PyConfig_Clear, (PyConfig *c), (c)) \
    F(PyStatus, PyConfig_SetBytesString, PyConfig_SetBytesString, (PyConfig *c, wchar_t **field, const char *s), (c, field, s)) \
    F(PyStatus, PyConfig_SetBytesArgv, PyConfig_SetBytesArgv, (PyConfig *c, Py_ssize_t n, char *const *argv), (c, n, argv)) \
    F(PyStatus, PyWideStringList_Append, PyWideStringList_Append, (PyWideStringList *l, const wchar_t *s), (l, s)) \
    F(PyStatus, Py_InitializeFromConfig, Py_InitializeFromConfig, (const PyConfig *c), (c)) \
    F(wchar_t *, Py_DecodeLocale, Py_DecodeLocale, (const char *s, size_t *n), (s, n)) \
    F(void *, PyMem_RawCalloc, PyMem_RawCalloc, (size_t n, size_t size), (n, size)) \
    V(PyMem_RawFree, PyMem_RawFree, (void *p), (p)) \
    V(Py_IncRef, Py_IncRef, (PyObject *o), (o)) \
    V(Py_DecRef, Py_DecRef, (PyObject *o), (o)) \
    F(PyThreadState *, PyEval_SaveThread, PyEval_SaveThread, (void), ()) \
    V(PyEval_RestoreThread, PyEval_RestoreThread, (PyThreadState *t), (t)) \
    F(PyThreadState *, PyThreadState_New, PyThreadState_New, (PyInterpreterState *i), (i)) \
    F(PyInterpreterState *, PyThreadState_GetInterpreter, PyThreadState_GetInterpreter, (PyThreadState *t), (t)) \
    V(PyThreadState_Clear, PyThreadState_Clear, (PyThreadState *t), (t)) \
    V(PyThreadState_DeleteCurrent, PyThreadState_DeleteCurrent, (void), ()) \
    F(PyThreadState *, PyGILState_GetThisThreadState, PyGILState_GetThisThreadState, (void), ()) \
    F(PyGILState_STATE, PyGILState_Ensure, PyGILState_Ensure, (void), ()) \
    V(PyGILState_Release, PyGILState_Release, (PyGILState_STATE s), (s)) \
    F(int, PyImport_AppendInittab, PyImport_AppendInittab, (const char *name, PyObject *(*init)(void)), (name, init)) \
    F(PyObject *, PyImport_ImportModule, PyImport_ImportModule, (const char *name), (name)) \
    F(long, PyImport_GetMagicNumber, PyImport_GetMagicNumber, (void), ()) \
    F(PyObject *, PyModule_Create2, PyModule_Create2, (PyModuleDef *d, int api), (d, api)) \
    F(PyObject *, PyType_FromSpec, PyType_FromSpec, (PyType_Spec *s), (s)) \
    F(void *, PyType_GetSlot, PyType_GetSlot, (PyTypeObject *t, int slot), (t, slot)) \
    F(unsigned long, PyType_GetFlags, PyType_GetFlags, (PyTypeObject *t), (t)) \
    F(PyObject *, PyCFunction_NewEx, PyCFunction_NewEx, (PyMethodDef *d, PyObject *self, PyObject *module), (d, self, module)) \
    F(PyObject *, PyErr_Occurred, PyErr_Occurred, (void), ()) \
    V(PyErr_Clear, PyErr_Clear, (void), ()) \
    V(PyErr_SetString, PyErr_SetString, (PyObject *t, const char *m), (t, m)) \
    V(PyErr_SetObject, PyErr_SetObject, (PyObject *t, PyObject *v), (t, v)) \
    V(PyErr_Fetch, PyErr_Fetch, (PyObject **t, PyObject **v, PyObject **tb), (t, v, tb)) \
    V(PyErr_NormalizeException, PyErr_NormalizeException, (PyObject **t, PyObject **v, PyObject **tb), (t, v, tb)) \
    F(int, PyException_SetTraceback, PyException_SetTraceback, (PyObject *e, PyObject *tb), (e, tb)) \
    F(PyObject *, PyObject_GetAttr, PyObject_GetAttr, (PyObject *o, PyObject *n), (o, n)) \
    F(PyObject *, PyObject_GetAttrString, PyObject_GetAttrString, (PyObject *o, const char *n), (o, n)) \
    F(int, PyObject_SetAttrString, PyObject_SetAttrString, (PyObject *o, const char *n, PyObject *v), (o, n, v)) \
    F(int, PyObject_HasAttrString, PyObject_HasAttrString, (PyObject *o, const char *n), (o, n)) \
    F(int, PyObject_SetItem, PyObject_SetItem, (PyObject *o, PyObject *k, PyObject *v), (o, k, v)) \
    F(PyObject *, PyObject_Str, PyObject_Str, (PyObject *o), (o)) \
    F(PyObject *, PyObject_Repr, PyObject_Repr, (PyObject *o), (o)) \
    F(int, PyObject_IsTrue, PyObject_IsTrue, (PyObject *o), (o)) \
    F(PyObject *, PyObject_Call, PyObject_Call, (PyObject *c, PyObject *a, PyObject *k), (c, a, k)) \
    F(PyObject *, PyObject_VectorcallDict, PyObject_VectorcallDict, (PyObject *c, PyObject *const *args, size_t nargsf, PyObject *kwargs), (c, args, nargsf, kwargs)) \
    F(int, PyObject_IsInstance, PyObject_IsInstance, (PyObject *o, PyObject *cls), (o, cls)) \
    F(PyObject *, PyObject_VectorcallMethod, PyObject_VectorcallMethod, (PyObject *name, PyObject *const *args, size_t nargsf, PyObject *kwnames), (name, args, nargsf, kwnames)) \
    F(PyObject *, PyObject_GetIter, PyObject_GetIter, (PyObject *o), (o)) \
    F(PyObject *, PyIter_Next, PyIter_Next, (PyObject *o), (o)) \
    F(PyObject *, PyUnicode_FromString, PyUnicode_FromString, (const char *s), (s)) \
    F(PyObject *, PyUnicode_FromStringAndSize, PyUnicode_FromStringAndSize, (const char *s, Py_ssize_t n), (s, n)) \
    F(const char *, PyUnicode_AsUTF8AndSize, PyUnicode_AsUTF8AndSize, (PyObject *o, Py_ssize_t *n), (o, n)) \
    F(PyObject *, PyUnicode_Join, PyUnicode_Join, (PyObject *sep, PyObject *seq), (sep, seq)) \
    F(PyObject *, PyUnicode_Concat, PyUnicode_Concat, (PyObject *left, PyObject *right), (left, right)) \
    F(PyObject *, PyUnicode_DecodeLatin1, PyUnicode_DecodeLatin1, (const char *s, Py_ssize_t n, const char *errors), (s, n, errors)) \
    F(PyObject *, PyUnicode_InternFromString, PyUnicode_InternFromString, (const char *s), (s)) \
    F(int, PyUnicode_CompareWithASCIIString, PyUnicode_CompareWithASCIIString, (PyObject *o, const char *s), (o, s)) \
    F(PyObject *, PyBytes_FromStringAndSize, PyBytes_FromStringAndSize, (const char *s, Py_ssize_t n), (s, n)) \
    F(char *, PyBytes_AsString, PyBytes_AsString, (PyObject *o), (o)) \
    F(Py_ssize_t, PyBytes_Size, PyBytes_Size, (PyObject *o), (o)) \
    F(Py_ssize_t, PyByteArray_Size, PyByteArray_Size, (PyObject *o), (o)) \
    F(PyObject *, PyLong_FromSsize_t, PyLong_FromSsize_t, (Py_ssize_t v), (v)) \
    F(Py_ssize_t, PyLong_AsSsize_t, PyLong_AsSsize_t, (PyObject *o), (o)) \
    F(PyObject *, PyTuple_New, PyTuple_New, (Py_ssize_t n), (n)) \
    F(Py_ssize_t, PyTuple_Size, PyTuple_Size, (PyObject *o), (o)) \
    F(PyObject *, PyTuple_GetItem, PyTuple_GetItem, (PyObject *o, Py_ssize_t i), (o, i)) \
    F(int, PyTuple_SetItem, PyTuple_SetItem, (PyObject *o, Py_ssize_t i, PyObject *v), (o, i, v)) \
    F(PyObject *, PyList_New, PyList_New, (Py_ssize_t n), (n)) \
    F(Py_ssize_t, PyList_Size, PyList_Size, (PyObject *o), (o)) \
    F(PyObject *, PyList_GetItem, PyList_GetItem, (PyObject *o, Py_ssize_t i), (o, i)) \
    F(int, PyList_SetItem, PyList_SetItem, (PyObject *o, Py_ssize_t i, PyObject *v), (o, i, v)) \
    F(int, PyList_SetSlice, PyList_SetSlice, (PyObject *o, Py_ssize_t lo, Py_ssize_t hi, PyObject *v), (o, lo, hi, v)) \
    F(PyObject *, PyDict_New, PyDict_New, (void), ()) \
    F(PyObject *, PyDict_GetItemString, PyDict_GetItemString, (PyObject *d, const char *k), (d, k)) \
    F(PyObject *, PyDict_GetItemWithError, PyDict_GetItemWithError, (PyObject *d, PyObject *k), (d, k)) \
    F(int, PyDict_SetItemString, PyDict_SetItemString, (PyObject *d, const char *k, PyObject *v), (d, k, v)) \
    F(int, PyDict_SetItem, PyDict_SetItem, (PyObject *d, PyObject *k, PyObject *v), (d, k, v)) \
    F(int, PyDict_DelItem, PyDict_DelItem, (PyObject *d, PyObject *k), (d, k)) \
    F(PyObject *, PyDict_Copy, PyDict_Copy, (PyObject *d), (d)) \
    F(PyObject *, frost_PyDict_NewPresized, _PyDict_NewPresized, (Py_ssize_t n), (n)) \
    F(PyObject *, PyDict_SetDefault, PyDict_SetDefault, (PyObject *d, PyObject *k, PyObject *v), (d, k, v)) \
    F(Py_ssize_t, PyDict_Size, PyDict_Size, (PyObject *d), (d)) \
    F(int, PyDict_Next, PyDict_Next, (PyObject *d, Py_ssize_t *p, PyObject **k, PyObject **v), (d, p, k, v)) \
    F(void *, PyMem_Malloc, PyMem_Malloc, (size_t n), (n)) \
    V(PyMem_Free, PyMem_Free, (void *p), (p)) \
    F(PyObject *, PyErr_NoMemory, PyErr_NoMemory, (void), ()) \
    F(PyObject *, PySys_GetObject, PySys_GetObject, (const char *n), (n)) \
    F(int, PySys_SetObject, PySys_SetObject, (const char *n, PyObject *v), (n, v)) \
    F(PyObject *, PyEval_GetBuiltins, PyEval_GetBuiltins, (void), ()) \
    F(PyObject *, PyEval_EvalCode, PyEval_EvalCode, (PyObject *c, PyObject *g, PyObject *l), (c, g, l)) \
    F(PyObject *, frost_Py_CompileStringExFlags, Py_CompileStringExFlags, (const char *s, const char *f, int start, PyCompilerFlags *fl, int o), (s, f, start, fl, o)) \
    F(PyObject *, frost_Py_CompileStringObject, Py_CompileStringObject, (const char *s, PyObject *f, int start, PyCompilerFlags *fl, int o), (s, f, start, fl, o)) \
    F(PyObject *, frost_PyMarshal_ReadObjectFromString, PyMarshal_ReadObjectFromString, (const char *s, Py_ssize_t n), (s, n))

#define FROST_DECLARE_FUNCTION(type, name, symbol, parameters, arguments) type name parameters;
#define FROST_DECLARE_VOID_FUNCTION(name, symbol, parameters, arguments) void name parameters;
FROST_PYTHON_FUNCTIONS(FROST_DECLARE_FUNCTION, FROST_DECLARE_VOID_FUNCTION)

/* Objects and exception types the loader names: X(C name, symbol). */
#define FROST_PYTHON_OBJECTS(X) \
    X(None, _Py_NoneStruct) X(True, _Py_TrueStruct) X(False, _Py_FalseStruct) \
    X(NotImplemented, _Py_NotImplementedStruct) \
    X(bool_type, PyBool_Type) X(float_type, PyFloat_Type) X(code_type, PyCode_Type) \
    X(list_type, PyList_Type) X(bytes_type, PyBytes_Type) X(bytearray_type, PyByteArray_Type)
#define FROST_PYTHON_EXCEPTIONS(X) \
    X(TypeError) X(ValueError) X(AttributeError) X(ImportError) X(ModuleNotFoundError) X(RuntimeError) \
    X(KeyError) X(IndexError) X(FileNotFoundError) X(OSError) X(SyntaxError) X(NotImplementedError) \
    X(OverflowError) X(SystemError) X(AssertionError) X(StopIteration)

typedef struct {
#define FROST_OBJECT_FIELD(name, symbol) PyObject *name;
    FROST_PYTHON_OBJECTS(FROST_OBJECT_FIELD)
#define FROST_EXCEPTION_FIELD(name) PyObject **PyExc_##name;
    FROST_PYTHON_EXCEPTIONS(FROST_EXCEPTION_FIELD)
    /* The thread state holding the GIL, NULL when none: PyThreadState_GetUnchecked from
       3.13, _PyThreadState_UncheckedGet before. */
    PyThreadState *(*current_thread_state)(void);
    int major, minor;
} FrostPythonSymbols;
extern FrostPythonSymbols frost_python;

/* Loads the CPython shared library at `path` (RTLD_GLOBAL, so that extension modules bind
   to it) and resolves every symbol above. 0 on success; otherwise -1 and a message in
   `error`. Loading a second, different library into one process is refused. */
int frost_python_load(const char *path, char *error, size_t error_size);
/* Whether a library is loaded (and which). */
const char *frost_python_loaded_path(void);

/* Where the PyConfig fields frost sets are, for one minor version of 3.x; NULL for a
   version whose layout frost does not know. Offsets of -1: no such field. */
typedef struct {
    int minor;
    size_t size;
    ptrdiff_t site_import, user_site_directory, use_environment, buffered_stdio, write_bytecode, parse_argv,
        pathconfig_warnings, safe_path, install_signal_handlers, optimization_level, program_name, executable, home,
        stdio_encoding, module_search_paths_set, module_search_paths;
} FrostConfigLayout;
const FrostConfigLayout *frost_python_config_layout(int minor);
static inline int *frost_config_int(PyConfig *c, ptrdiff_t offset) { return (int *)((char *)c + offset); }
static inline wchar_t **frost_config_string(PyConfig *c, ptrdiff_t offset) { return (wchar_t **)((char *)c + offset); }
static inline PyWideStringList *frost_config_list(PyConfig *c, ptrdiff_t offset) {
    return (PyWideStringList *)((char *)c + offset);
}

/* Helpers for what Python.h has as macros. */
#define FROST_EXCEPTION_ACCESSOR(name) static inline PyObject *frost_PyExc_##name(void) { return *frost_python.PyExc_##name; }
FROST_PYTHON_EXCEPTIONS(FROST_EXCEPTION_ACCESSOR)

static inline PyObject *frost_none(void) { return frost_python.None; }
static inline PyObject *frost_true(void) { return frost_python.True; }
static inline PyObject *frost_false(void) { return frost_python.False; }
static inline PyObject *frost_not_implemented(void) { return frost_python.NotImplemented; }

static inline void frost_incref(PyObject *o) { Py_IncRef(o); }
static inline void frost_decref(PyObject *o) { Py_DecRef(o); }
static inline void frost_xdecref(PyObject *o) { if (o) Py_DecRef(o); }
static inline Py_ssize_t frost_refcount(PyObject *o) { return o->ob_refcnt; }

static inline PyTypeObject *frost_type(PyObject *o) { return o->ob_type; }
static inline PyObject *frost_type_object(PyObject *o) { return (PyObject *)o->ob_type; }
/* A type's tp_name: the one field of PyTypeObject read directly. It follows PyVarObject's
   header in every CPython since 2.x (PyType_GetName is only 3.11+). */
typedef struct { PyObject ob_base; Py_ssize_t ob_size; const char *tp_name; } FrostTypeHead;
static inline const char *frost_type_object_name(PyObject *type) { return ((FrostTypeHead *)type)->tp_name; }
static inline const char *frost_type_name(PyObject *o) { return frost_type_object_name((PyObject *)o->ob_type); }

static inline int frost_has_type_flag(PyObject *o, unsigned long flag) { return (PyType_GetFlags(o->ob_type) & flag) != 0; }
static inline int frost_is_str(PyObject *o) { return frost_has_type_flag(o, FROST_TPFLAGS_UNICODE_SUBCLASS); }
static inline int frost_is_bytes(PyObject *o) { return frost_has_type_flag(o, FROST_TPFLAGS_BYTES_SUBCLASS); }
static inline int frost_is_int(PyObject *o) { return frost_has_type_flag(o, FROST_TPFLAGS_LONG_SUBCLASS); }
static inline int frost_is_tuple(PyObject *o) { return frost_has_type_flag(o, FROST_TPFLAGS_TUPLE_SUBCLASS); }
static inline int frost_is_list(PyObject *o) { return frost_has_type_flag(o, FROST_TPFLAGS_LIST_SUBCLASS); }
static inline int frost_is_dict(PyObject *o) { return frost_has_type_flag(o, FROST_TPFLAGS_DICT_SUBCLASS); }
static inline int frost_is_bool(PyObject *o) { return (PyObject *)o->ob_type == frost_python.bool_type; }
/* Exactly a list or bytes, not a subclass (which may add close(), for example). */
static inline int frost_is_exact_list(PyObject *o) { return (PyObject *)o->ob_type == frost_python.list_type; }
static inline int frost_is_exact_bytes(PyObject *o) { return (PyObject *)o->ob_type == frost_python.bytes_type; }
static inline int frost_is_code(PyObject *o) { return (PyObject *)o->ob_type == frost_python.code_type; }
static inline int frost_is_float(PyObject *o) { return (PyObject *)o->ob_type == frost_python.float_type; }

/* Native objects defined from Swift carry one pointer (a retained Swift object) after
   the PyObject header. */
typedef struct {
    PyObject ob_base;
    void *payload;
} FrostNativeObject;

static inline Py_ssize_t frost_native_basicsize(void) { return (Py_ssize_t)sizeof(FrostNativeObject); }
static inline void *frost_native_payload(PyObject *o) { return ((FrostNativeObject *)o)->payload; }
static inline void frost_native_set_payload(PyObject *o, void *p) { ((FrostNativeObject *)o)->payload = p; }

/* tp_dealloc for heap types: free the object and drop the reference it held on its type. */
static inline void frost_native_free(PyObject *o) {
    PyTypeObject *type = o->ob_type;
    void (*tp_free)(void *) = (void (*)(void *))PyType_GetSlot(type, Py_tp_free);
    tp_free(o);
    Py_DecRef((PyObject *)type);
}

static inline PyObject *frost_native_alloc(PyObject *type) {
    PyObject *(*tp_alloc)(PyTypeObject *, Py_ssize_t) =
        (PyObject * (*)(PyTypeObject *, Py_ssize_t)) PyType_GetSlot((PyTypeObject *)type, Py_tp_alloc);
    return tp_alloc((PyTypeObject *)type, 0);
}

/* A PyModuleDef (PyModuleDef_HEAD_INIT); it must live as long as the module. */
static inline PyModuleDef *frost_module_def_new(const char *name, const char *doc, PyMethodDef *methods) {
    PyModuleDef *def = (PyModuleDef *)PyMem_RawCalloc(1, sizeof(PyModuleDef));
    def->m_base.ob_base.ob_refcnt = 1;
    def->m_name = name;
    def->m_doc = doc;
    def->m_size = -1;
    def->m_methods = methods;
    return def;
}
static inline PyObject *frost_module_create(PyModuleDef *def) { return PyModule_Create2(def, FROST_PYTHON_API_VERSION); }

/* The long-lived thread state frost made or adopted for the calling thread, once it was
   found to be the one libpython binds to the thread (PythonThreadState sets and clears it):
   the GIL check below then needs no thread-specific lookup in libpython on every release of
   a reference. NULL on other threads. */
extern _Thread_local PyThreadState *frost_own_thread_state;

/* Whether the calling OS thread holds the GIL: the current thread state is the one
   bound to this thread. (PyGILState_Check answers 1 once Python is finalised.) */
static inline int frost_gil_held_by_this_thread(void) {
    PyThreadState *current = frost_python.current_thread_state();
    if (current == NULL) return 0;
    PyThreadState *own = frost_own_thread_state;
    return current == (own != NULL ? own : PyGILState_GetThisThreadState());
}

/* Records (or, with NULL, forgets) the calling thread's own thread state. */
void frost_set_own_thread_state(PyThreadState *state);

typedef PyObject *(*FrostFastCall)(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
static inline PyCFunction frost_as_pycfunction(FrostFastCall f) { return (PyCFunction)(void (*)(void))f; }
static inline Py_ssize_t frost_vectorcall_nargs(Py_ssize_t n) {
    return (Py_ssize_t)((size_t)n & ~((size_t)1 << (8 * sizeof(size_t) - 1)));
}

/* Methods of native types (tp_methods). A PyMethodDef carries no closure, so each method
   needs its own C function: a fixed table of trampolines forwards slot i to one Swift
   dispatcher (frost_native_slot_dispatch, defined in FrostPython), which finds the method
   registered for that slot. 128 slots: every native type's methods together. */
PyObject *frost_native_slot_dispatch(int slot, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames);
int frost_native_slot_count(void);
PyCFunction frost_native_slot(int slot);
/* The tp_call of a native type whose call is slot `slot` (its tuple and dict are passed
   on as a vectorcall). */
void *frost_native_call_slot(int slot);
/* The tp_iternext of a native type whose next is slot `slot` (called with no arguments),
   and the tp_iter of an object that is its own iterator. */
void *frost_native_next_slot(int slot);
void *frost_native_self_iter(void);

typedef PyObject *(*FrostGetter)(PyObject *self, void *closure);
typedef int (*FrostSetter)(PyObject *self, PyObject *value, void *closure);

static inline int frost_is_initialized_status_error(PyStatus status) { return status._type != 0; }

static inline unsigned long frost_native_type_flags(void) {
    return FROST_TPFLAGS_HAVE_VERSION_TAG | FROST_TPFLAGS_DISALLOW_INSTANTIATION | FROST_TPFLAGS_IMMUTABLETYPE;
}

static inline PyObject *frost_call1(PyObject *callable, PyObject *arg) {
    PyObject *args = PyTuple_New(1);
    if (args == NULL) return NULL;
    Py_IncRef(arg);
    PyTuple_SetItem(args, 0, arg);
    PyObject *result = PyObject_Call(callable, args, NULL);
    Py_DecRef(args);
    return result;
}

/* A tuple of three borrowed objects (PyTuple_Pack is variadic). */
static inline PyObject *PyTuple_Pack3(PyObject *a, PyObject *b, PyObject *c) {
    PyObject *tuple = PyTuple_New(3);
    if (tuple == NULL) return NULL;
    Py_IncRef(a); PyTuple_SetItem(tuple, 0, a);
    Py_IncRef(b); PyTuple_SetItem(tuple, 1, b);
    Py_IncRef(c); PyTuple_SetItem(tuple, 2, c);
    return tuple;
}
#endif
