/* Shared declarations of libbitnet's implementation files (not installed). */
#ifndef BITNET_CAPI_INTERNAL_H
#define BITNET_CAPI_INTERNAL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>   /* first, as the CPython docs require */

#include "bitnet.h"

/* ---- error.c: the thread-local last error */
void bn_clear_error(void);
void bn_set_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- runtime.c: the embedded interpreter */
typedef struct {
    PyGILState_STATE gil;
} bn_call;

/* Start the interpreter (once per process, unless the host already did), take the GIL and make sure the
   bitnet.capi._shim module is imported. Returns BITNET_OK with the GIL held, or an error code (error set,
   GIL not held). `func` names the API function for error messages. */
int bn_enter(bn_call *call, const char *func);
void bn_leave(bn_call *call);

/* bitnet.capi._shim (borrowed reference; valid between bn_enter and bn_leave). */
PyObject *bn_shim(void);

/* Consume the pending Python exception into the thread-local error; returns its bitnet.h code. GIL held. */
int bn_error_from_python(const char *func);

/* The package version and the Python the library was built against (bitnet_build_config.h). */
const char *bn_build_version(void);

#endif /* BITNET_CAPI_INTERNAL_H */
