/* The smallest program that embeds CPython, as frost's loader and PyInstaller's
   bootloader do: runs argv[1] as Python source. Linked once with Debian's shared
   libpython (what both load) and once with its static archive (what /usr/bin/python3 is
   built from), to tell the interpreter's build from the cost of embedding it. Without
   the site module, as frost's loader and `python -S`. */
#include <Python.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SOURCE\n", argv[0]);
        return 2;
    }
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.site_import = 0;
    PyStatus status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) Py_ExitStatusException(status);
    int failed = PyRun_SimpleString(argv[1]);
    if (Py_FinalizeEx() < 0) failed = 1;
    return failed ? 1 : 0;
}
