// CPython: the C API of any CPython 3.10 to 3.13, loaded at run time: its own declarations, dlsym-filled trampolines, per-version PyConfig offsets.
/* Loading the bundle's libpython at run time, and the trampolines that call into it. */
#include "CPython.h"
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

FrostPythonSymbols frost_python;
static void *library;
_Thread_local PyThreadState *frost_own_thread_state;

void frost_set_own_thread_state(PyThreadState *state) { frost_own_thread_state = state; }
static char library_path[4096];

/* Each API function: a pointer filled by frost_python_load and a hidden definition under
   the API's name that calls through it. Hidden, so that extension modules, which look
   the API up in the global scope, bind to libpython itself and never to these. */
#define FROST_DEFINE_FUNCTION(type, name, symbol, parameters, arguments) \
    static type(*pointer_##name) parameters; \
    __attribute__((visibility("hidden"))) type name parameters { return pointer_##name arguments; }
#define FROST_DEFINE_VOID_FUNCTION(name, symbol, parameters, arguments) \
    static void(*pointer_##name) parameters; \
    __attribute__((visibility("hidden"))) void name parameters { pointer_##name arguments; }
FROST_PYTHON_FUNCTIONS(FROST_DEFINE_FUNCTION, FROST_DEFINE_VOID_FUNCTION)

static void *resolve(const char *symbol, const char *path, char *error, size_t error_size) {
    void *address = dlsym(library, symbol);
    if (address == NULL) snprintf(error, error_size, "%s has no symbol %s: it is not a supported CPython library", path, symbol);
    return address;
}

const char *frost_python_loaded_path(void) { return library ? library_path : NULL; }

int frost_python_load(const char *path, char *error, size_t error_size) {
    if (library != NULL) {
        if (strcmp(path, library_path) == 0) return 0;
        snprintf(error, error_size, "this process already runs %s; it cannot load %s too", library_path, path);
        return -1;
    }
    void *handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (handle == NULL) {
        const char *why = dlerror();
        snprintf(error, error_size, "cannot load %s: %s", path, why ? why : "unknown error");
        return -1;
    }
    library = handle;
    FrostPythonSymbols symbols;
    memset(&symbols, 0, sizeof symbols);
#define FROST_RESOLVE_FUNCTION(type, name, symbol, parameters, arguments) \
    if ((pointer_##name = (type(*) parameters)resolve(#symbol, path, error, error_size)) == NULL) goto failed;
#define FROST_RESOLVE_VOID_FUNCTION(name, symbol, parameters, arguments) \
    if ((pointer_##name = (void(*) parameters)resolve(#symbol, path, error, error_size)) == NULL) goto failed;
    FROST_PYTHON_FUNCTIONS(FROST_RESOLVE_FUNCTION, FROST_RESOLVE_VOID_FUNCTION)
#define FROST_RESOLVE_OBJECT(name, symbol) \
    if ((symbols.name = (PyObject *)resolve(#symbol, path, error, error_size)) == NULL) goto failed;
    FROST_PYTHON_OBJECTS(FROST_RESOLVE_OBJECT)
#define FROST_RESOLVE_EXCEPTION(name) \
    if ((symbols.PyExc_##name = (PyObject **)resolve("PyExc_" #name, path, error, error_size)) == NULL) goto failed;
    FROST_PYTHON_EXCEPTIONS(FROST_RESOLVE_EXCEPTION)
    symbols.current_thread_state = (PyThreadState * (*)(void)) dlsym(library, "PyThreadState_GetUnchecked");
    if (symbols.current_thread_state == NULL) {
        symbols.current_thread_state = (PyThreadState * (*)(void)) resolve("_PyThreadState_UncheckedGet", path, error, error_size);
        if (symbols.current_thread_state == NULL) goto failed;
    }
    if (sscanf(pointer_Py_GetVersion(), "%d.%d", &symbols.major, &symbols.minor) != 2) {
        snprintf(error, error_size, "%s reports an unreadable version: %s", path, pointer_Py_GetVersion());
        goto failed;
    }
    frost_python = symbols;
    snprintf(library_path, sizeof library_path, "%s", path);
    return 0;
failed:
    dlclose(handle);
    library = NULL;
    return -1;
}

/* PyConfig's layout differs in every minor version; these offsets were taken with
   offsetof from each version's cpython/initconfig.h (x86-64 and aarch64 alike: ints,
   pointers and a Py_ssize_t), and FrostPythonTests checks them against the headers of
   the interpreters it finds. */
static const FrostConfigLayout layouts[] = {
    { .minor = 10, .size = 392, .site_import = 152, .user_site_directory = 192, .use_environment = 8,
      .buffered_stdio = 200, .write_bytecode = 180, .parse_argv = 80, .pathconfig_warnings = 232, .safe_path = -1,
      .install_signal_handlers = 16, .optimization_level = 172, .program_name = 240, .executable = 296, .home = 256,
      .stdio_encoding = 208, .module_search_paths_set = 272, .module_search_paths = 280 },
    { .minor = 11, .size = 424, .site_import = 168, .user_site_directory = 208, .use_environment = 8,
      .buffered_stdio = 216, .write_bytecode = 196, .parse_argv = 96, .pathconfig_warnings = 256, .safe_path = 252,
      .install_signal_handlers = 16, .optimization_level = 188, .program_name = 264, .executable = 328, .home = 280,
      .stdio_encoding = 224, .module_search_paths_set = 296, .module_search_paths = 304 },
    { .minor = 12, .size = 432, .site_import = 176, .user_site_directory = 216, .use_environment = 8,
      .buffered_stdio = 224, .write_bytecode = 204, .parse_argv = 104, .pathconfig_warnings = 268, .safe_path = 260,
      .install_signal_handlers = 16, .optimization_level = 196, .program_name = 272, .executable = 336, .home = 288,
      .stdio_encoding = 232, .module_search_paths_set = 304, .module_search_paths = 312 },
    { .minor = 13, .size = 448, .site_import = 176, .user_site_directory = 216, .use_environment = 8,
      .buffered_stdio = 224, .write_bytecode = 204, .parse_argv = 104, .pathconfig_warnings = 272, .safe_path = 260,
      .install_signal_handlers = 16, .optimization_level = 196, .program_name = 280, .executable = 344, .home = 296,
      .stdio_encoding = 232, .module_search_paths_set = 312, .module_search_paths = 320 },
};

const FrostConfigLayout *frost_python_config_layout(int minor) {
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        if (layouts[i].minor == minor) return &layouts[i];
    }
    return NULL;
}

/* tp_call of a native type: the call's tuple and dict as a vectorcall (borrowed
   arguments, keyword names in a tuple), for the same dispatcher as its methods. */
static PyObject *frost_native_call_adapter(int slot, PyObject *self, PyObject *args, PyObject *kwargs) {
    Py_ssize_t nargs = PyTuple_Size(args);
    Py_ssize_t nkw = kwargs != NULL ? PyDict_Size(kwargs) : 0;
    PyObject *small[8];
    PyObject **vector = nargs + nkw <= 8 ? small : (PyObject **)PyMem_Malloc(sizeof(PyObject *) * (size_t)(nargs + nkw));
    if (vector == NULL) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < nargs; i++) vector[i] = PyTuple_GetItem(args, i);
    PyObject *kwnames = NULL;
    if (nkw > 0) {
        kwnames = PyTuple_New(nkw);
        if (kwnames == NULL) {
            if (vector != small) PyMem_Free(vector);
            return NULL;
        }
        Py_ssize_t position = 0, j = 0;
        PyObject *key, *value;
        while (j < nkw && PyDict_Next(kwargs, &position, &key, &value)) {
            Py_IncRef(key);
            PyTuple_SetItem(kwnames, j, key);
            vector[nargs + j] = value;
            j++;
        }
    }
    PyObject *result = frost_native_slot_dispatch(slot, self, vector, nargs, kwnames);
    if (kwnames != NULL) Py_DecRef(kwnames);
    if (vector != small) PyMem_Free(vector);
    return result;
}

/* The trampolines of native types' methods and calls (see the header). */
#define FROST_SLOT_AT(name, value) \
    static PyObject *frost_slot_##name(PyObject *s, PyObject *const *a, Py_ssize_t n, PyObject *k) { \
        return frost_native_slot_dispatch((value), s, a, n, k); } \
    static PyObject *frost_call_##name(PyObject *s, PyObject *a, PyObject *k) { \
        return frost_native_call_adapter((value), s, a, k); } \
    static PyObject *frost_next_##name(PyObject *s) { \
        return frost_native_slot_dispatch((value), s, NULL, 0, NULL); }
#define FROST_SLOTS8(p, v) FROST_SLOT_AT(p##0, (v)*8+0) FROST_SLOT_AT(p##1, (v)*8+1) FROST_SLOT_AT(p##2, (v)*8+2) \
    FROST_SLOT_AT(p##3, (v)*8+3) FROST_SLOT_AT(p##4, (v)*8+4) FROST_SLOT_AT(p##5, (v)*8+5) \
    FROST_SLOT_AT(p##6, (v)*8+6) FROST_SLOT_AT(p##7, (v)*8+7)
FROST_SLOTS8(a, 0) FROST_SLOTS8(b, 1) FROST_SLOTS8(c, 2) FROST_SLOTS8(d, 3)
FROST_SLOTS8(e, 4) FROST_SLOTS8(f, 5) FROST_SLOTS8(g, 6) FROST_SLOTS8(h, 7)
FROST_SLOTS8(i, 8) FROST_SLOTS8(j, 9) FROST_SLOTS8(k, 10) FROST_SLOTS8(l, 11)
FROST_SLOTS8(m, 12) FROST_SLOTS8(n, 13) FROST_SLOTS8(o, 14) FROST_SLOTS8(p, 15)
#define FROST_SLOT_NAMES8(p) frost_slot_##p##0, frost_slot_##p##1, frost_slot_##p##2, frost_slot_##p##3, \
    frost_slot_##p##4, frost_slot_##p##5, frost_slot_##p##6, frost_slot_##p##7
static FrostFastCall const slot_table[] = {
    FROST_SLOT_NAMES8(a), FROST_SLOT_NAMES8(b), FROST_SLOT_NAMES8(c), FROST_SLOT_NAMES8(d),
    FROST_SLOT_NAMES8(e), FROST_SLOT_NAMES8(f), FROST_SLOT_NAMES8(g), FROST_SLOT_NAMES8(h),
    FROST_SLOT_NAMES8(i), FROST_SLOT_NAMES8(j), FROST_SLOT_NAMES8(k), FROST_SLOT_NAMES8(l),
    FROST_SLOT_NAMES8(m), FROST_SLOT_NAMES8(n), FROST_SLOT_NAMES8(o), FROST_SLOT_NAMES8(p),
};
int frost_native_slot_count(void) { return (int)(sizeof slot_table / sizeof slot_table[0]); }
PyCFunction frost_native_slot(int slot) { return (PyCFunction)(void (*)(void))slot_table[slot]; }
#define FROST_CALL_NAMES8(p) frost_call_##p##0, frost_call_##p##1, frost_call_##p##2, frost_call_##p##3, \
    frost_call_##p##4, frost_call_##p##5, frost_call_##p##6, frost_call_##p##7
typedef PyObject *(*FrostNativeCall)(PyObject *self, PyObject *args, PyObject *kwargs);
static FrostNativeCall const call_table[] = {
    FROST_CALL_NAMES8(a), FROST_CALL_NAMES8(b), FROST_CALL_NAMES8(c), FROST_CALL_NAMES8(d),
    FROST_CALL_NAMES8(e), FROST_CALL_NAMES8(f), FROST_CALL_NAMES8(g), FROST_CALL_NAMES8(h),
    FROST_CALL_NAMES8(i), FROST_CALL_NAMES8(j), FROST_CALL_NAMES8(k), FROST_CALL_NAMES8(l),
    FROST_CALL_NAMES8(m), FROST_CALL_NAMES8(n), FROST_CALL_NAMES8(o), FROST_CALL_NAMES8(p),
};
void *frost_native_call_slot(int slot) { return (void *)call_table[slot]; }
#define FROST_NEXT_NAMES8(p) frost_next_##p##0, frost_next_##p##1, frost_next_##p##2, frost_next_##p##3, \
    frost_next_##p##4, frost_next_##p##5, frost_next_##p##6, frost_next_##p##7
typedef PyObject *(*FrostNativeNext)(PyObject *self);
static FrostNativeNext const next_table[] = {
    FROST_NEXT_NAMES8(a), FROST_NEXT_NAMES8(b), FROST_NEXT_NAMES8(c), FROST_NEXT_NAMES8(d),
    FROST_NEXT_NAMES8(e), FROST_NEXT_NAMES8(f), FROST_NEXT_NAMES8(g), FROST_NEXT_NAMES8(h),
    FROST_NEXT_NAMES8(i), FROST_NEXT_NAMES8(j), FROST_NEXT_NAMES8(k), FROST_NEXT_NAMES8(l),
    FROST_NEXT_NAMES8(m), FROST_NEXT_NAMES8(n), FROST_NEXT_NAMES8(o), FROST_NEXT_NAMES8(p),
};
void *frost_native_next_slot(int slot) { return (void *)next_table[slot]; }
static PyObject *frost_self_iter(PyObject *self) { Py_IncRef(self); return self; }
void *frost_native_self_iter(void) { return (void *)frost_self_iter; }
