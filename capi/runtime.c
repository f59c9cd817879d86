/* The embedded interpreter: started once per process (unless the host program already runs Python), then
   entered per API call with PyGILState_Ensure.

   The library finds its own installation: it lives at <root>/bitnet/capi/libbitnet.so, so <root> (a
   site-packages folder, or a source checkout for in-place builds) goes on sys.path, and the Python
   executable of that installation is configured so that a venv's own site-packages (numpy, tokenizers) are
   found without PYTHONPATH or PYTHONHOME. */
#include "internal.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitnet_build_config.h"   /* written by capi/build_library.py: BITNET_BUILD_PYTHON, BITNET_BUILD_VERSION */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_code = BITNET_OK;     /* why the runtime cannot start, for every later call */
static char g_init_error[1536];
static char g_root[PATH_MAX];           /* the folder that holds this library's bitnet package */
static char g_python[PATH_MAX];         /* the Python executable the interpreter is configured as */
static PyObject *g_shim;                /* bitnet.capi._shim; written and read with the GIL held */

const char *bn_build_version(void) {
    return BITNET_BUILD_VERSION;
}

PyObject *bn_shim(void) {
    return g_shim;
}

__attribute__((format(printf, 2, 3)))
static void init_failed(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_init_error, sizeof g_init_error, fmt, ap);
    va_end(ap);
    g_init_code = code;
}

/* <root> from this library's own path: <root>/bitnet/capi/libbitnet.so. */
static int locate_root(void) {
    Dl_info info;
    if (!dladdr((const void *)&g_root, &info) || !info.dli_fname) {
        init_failed(BITNET_ERR_RUNTIME, "cannot find where libbitnet is loaded from");
        return -1;
    }
    char *path = realpath(info.dli_fname, NULL);
    if (!path) {
        init_failed(BITNET_ERR_RUNTIME, "cannot resolve the path of libbitnet (%s)", info.dli_fname);
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        char *slash = strrchr(path, '/');
        if (!slash || slash == path) {
            init_failed(BITNET_ERR_RUNTIME, "libbitnet at %s is not inside a bitnet package", info.dli_fname);
            free(path);
            return -1;
        }
        *slash = '\0';
    }
    snprintf(g_root, sizeof g_root, "%s", path);
    free(path);
    return 0;
}

static int is_executable(const char *path) {
    return path[0] == '/' && access(path, X_OK) == 0;
}

/* When <root> is <prefix>/lib/python3.X/site-packages (or Debian's dist-packages), the installation's own
   interpreter is <prefix>/bin/python3.X: this holds for venvs and system installs, and stays right when a
   built wheel is installed into another environment than the one that built it. */
static int python_from_root(char *out, size_t cap) {
    char dirs[3][PATH_MAX];
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", g_root);
    for (int i = 0; i < 3; i++) {
        char *slash = strrchr(path, '/');
        if (!slash || slash == path)
            return -1;
        snprintf(dirs[i], sizeof dirs[i], "%s", slash + 1);
        *slash = '\0';
    }
    char versioned[32];
    snprintf(versioned, sizeof versioned, "python%d.%d", PY_MAJOR_VERSION, PY_MINOR_VERSION);
    if (strcmp(dirs[0], "site-packages") != 0 && strcmp(dirs[0], "dist-packages") != 0)
        return -1;
    if (strcmp(dirs[1], versioned) != 0 && strcmp(dirs[1], "python3") != 0)
        return -1;
    if (strcmp(dirs[2], "lib") != 0 && strcmp(dirs[2], "lib64") != 0)
        return -1;
    const char *names[] = {versioned, "python3"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if ((size_t)snprintf(out, cap, "%s/bin/%s", path, names[i]) < cap && is_executable(out))
            return 0;
    }
    return -1;
}

/* BITNET_PYTHON (an explicit override), the installation's own interpreter, or the one that built us. */
static int find_python(void) {
    const char *forced = getenv("BITNET_PYTHON");
    if (forced && forced[0]) {
        if (!is_executable(forced)) {
            init_failed(BITNET_ERR_RUNTIME, "BITNET_PYTHON=%s is not an absolute path to an executable", forced);
            return -1;
        }
        snprintf(g_python, sizeof g_python, "%s", forced);
        return 0;
    }
    if (python_from_root(g_python, sizeof g_python) == 0)
        return 0;
    if (is_executable(BITNET_BUILD_PYTHON)) {
        snprintf(g_python, sizeof g_python, "%s", BITNET_BUILD_PYTHON);
        return 0;
    }
    init_failed(BITNET_ERR_RUNTIME,
                "cannot find the Python executable of the installation in %s (the one that built libbitnet, "
                "%s, is gone): set BITNET_PYTHON to its path", g_root, BITNET_BUILD_PYTHON);
    return -1;
}

/* A host that dlopen()s libbitnet with RTLD_LOCAL hides libpython's symbols from the extension modules that
   Python loads later (numpy, the engine's own), which then fail with "undefined symbol". Promote it. */
static void make_libpython_global(void) {
    Dl_info info;
    if (dladdr((const void *)&Py_InitializeFromConfig, &info) && info.dli_fname)
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
}

static int status_failed(PyStatus status, const char *what) {
    if (!PyStatus_Exception(status))
        return 0;
    char detail[512];
    snprintf(detail, sizeof detail, "%s%s%s", status.func ? status.func : "", status.func ? ": " : "",
             status.err_msg ? status.err_msg : "exit requested");
    init_failed(BITNET_ERR_RUNTIME, "the Python runtime could not start (%s): %s", what, detail);
    return -1;
}

/* PYTHONMALLOC still works (valgrind runs need PYTHONMALLOC=malloc) although the embedded configuration
   otherwise ignores the environment. */
static int allocator_from_env(void) {
    const char *name = getenv("PYTHONMALLOC");
    if (!name || !name[0])
        return PYMEM_ALLOCATOR_NOT_SET;
    static const struct { const char *name; int value; } table[] = {
        {"default", PYMEM_ALLOCATOR_DEFAULT}, {"debug", PYMEM_ALLOCATOR_DEBUG},
        {"malloc", PYMEM_ALLOCATOR_MALLOC}, {"malloc_debug", PYMEM_ALLOCATOR_MALLOC_DEBUG},
        {"pymalloc", PYMEM_ALLOCATOR_PYMALLOC}, {"pymalloc_debug", PYMEM_ALLOCATOR_PYMALLOC_DEBUG},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(name, table[i].name) == 0)
            return table[i].value;
    return PYMEM_ALLOCATOR_NOT_SET;
}

static void start_interpreter(void) {
    if (find_python() != 0)
        return;
    make_libpython_global();

    /* Isolated: a C program's PYTHONPATH/PYTHONHOME (meant for some other Python) must not redirect us, and
       the library must not touch the host's locale or signal handlers. UTF-8 mode matches the API's strings. */
    PyPreConfig pre;
    PyPreConfig_InitIsolatedConfig(&pre);
    pre.utf8_mode = 1;
    pre.allocator = allocator_from_env();
    if (status_failed(Py_PreInitialize(&pre), "pre-initialization"))
        return;

    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.isolated = 0;                 /* keep the user site-packages of `pip install --user` */
    config.user_site_directory = 1;
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    config.configure_c_stdio = 0;
    config.pathconfig_warnings = 0;
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, g_python);
    if (!PyStatus_Exception(status))
        status = PyConfig_SetBytesString(&config, &config.executable, g_python);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (status_failed(status, g_python))
        return;
    /* Release the GIL: every API call takes it with PyGILState_Ensure, from whichever thread. */
    (void)PyEval_SaveThread();
}

static void init_runtime(void) {
    if (locate_root() != 0)
        return;
    if (!Py_IsInitialized())
        start_interpreter();
}

static PyObject *take_exception(void) {
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* The pending exception as (bitnet.h code, "Type: message"), cleared. */
static int describe_exception(char *buf, size_t cap) {
    PyObject *exc = take_exception();
    if (!exc) {
        snprintf(buf, cap, "failed without a Python exception");
        return BITNET_ERR_RUNTIME;
    }
    int code = BITNET_ERR_RUNTIME;
    const char *message = NULL;
    PyObject *described = g_shim ? PyObject_CallMethod(g_shim, "describe_error", "O", exc) : NULL;
    PyObject *text = NULL;
    if (described && PyTuple_Check(described) && PyTuple_GET_SIZE(described) == 2) {
        code = (int)PyLong_AsLong(PyTuple_GET_ITEM(described, 0));
        message = PyUnicode_AsUTF8(PyTuple_GET_ITEM(described, 1));
    } else {
        PyErr_Clear();
        text = PyObject_Str(exc);
        message = text ? PyUnicode_AsUTF8(text) : NULL;
        if (message) {
            snprintf(buf, cap, "%s: %s", Py_TYPE(exc)->tp_name, message);
            message = buf;
        }
    }
    if (!message || PyErr_Occurred()) {
        PyErr_Clear();
        message = Py_TYPE(exc)->tp_name;
    }
    if (message != buf)
        snprintf(buf, cap, "%s", message);
    Py_XDECREF(described);
    Py_XDECREF(text);
    Py_DECREF(exc);
    return code < 0 ? code : BITNET_ERR_RUNTIME;
}

int bn_error_from_python(const char *func) {
    char message[1800];
    int code = describe_exception(message, sizeof message);
    bn_set_error(code, "%s: %s", func, message);
    return code;
}

/* Put <root> first on sys.path, so this library always drives its own bitnet package, and import the shim. */
static int import_shim(const char *func) {
    PyObject *path = PySys_GetObject("path");   /* borrowed */
    PyObject *root = PyUnicode_DecodeFSDefault(g_root);
    if (!root)
        return bn_error_from_python(func);
    int present = path && PyList_Check(path) ? PySequence_Contains(path, root) : -1;
    if (present == 0 && PyList_Insert(path, 0, root) != 0)
        present = -1;
    Py_DECREF(root);
    if (present < 0) {
        PyErr_Clear();
        bn_set_error(BITNET_ERR_RUNTIME, "%s: sys.path is not a list", func);
        return BITNET_ERR_RUNTIME;
    }
    g_shim = PyImport_ImportModule("bitnet.capi._shim");
    if (!g_shim) {
        char reason[1024];
        describe_exception(reason, sizeof reason);
        bn_set_error(BITNET_ERR_RUNTIME, "%s: cannot import the bitnet package from %s with %s: %s", func,
                     g_root, g_python[0] ? g_python : "the host's Python", reason);
        return BITNET_ERR_RUNTIME;
    }
    return BITNET_OK;
}

int bn_enter(bn_call *call, const char *func) {
    pthread_once(&g_once, init_runtime);
    if (g_init_code != BITNET_OK) {
        bn_set_error(g_init_code, "%s: %s", func, g_init_error);
        return g_init_code;
    }
    call->gil = PyGILState_Ensure();
    if (!g_shim) {
        int code = import_shim(func);
        if (code != BITNET_OK) {
            PyGILState_Release(call->gil);
            return code;
        }
    }
    return BITNET_OK;
}

void bn_leave(bn_call *call) {
    PyGILState_Release(call->gil);
}
