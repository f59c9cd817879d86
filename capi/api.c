/* The functions of include/bitnet.h: check the arguments in C, then call bitnet.capi._shim with the GIL held
   and marshal the results. The engine itself releases the GIL while it computes. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bitnet_model {
    PyObject *model;   /* a bitnet.Model; owned */
};

/* The models whose on_token callback is running on this thread, innermost first: calling back into such a
   model would wait forever on its own generation lock, and freeing it would pull it out from under the
   running generation, so both are refused. */
typedef struct bn_frame {
    const bitnet_model *model;
    struct bn_frame *outer;
} bn_frame;

static _Thread_local bn_frame *tls_callbacks;

static int in_own_callback(const bitnet_model *m) {
    for (const bn_frame *f = tls_callbacks; f; f = f->outer)
        if (f->model == m)
            return 1;
    return 0;
}

static int invalid(const char *func, const char *what) {
    bn_set_error(BITNET_ERR_INVALID_ARGUMENT, "%s: %s", func, what);
    return BITNET_ERR_INVALID_ARGUMENT;
}

/* `generates`: the call takes the model's generation lock, so it must not run inside that model's callback. */
static int check_model_call(const char *func, const bitnet_model *m, const char *text, const char *text_name,
                            int generates) {
    if (!m)
        return invalid(func, "model is NULL");
    if (!text) {
        bn_set_error(BITNET_ERR_INVALID_ARGUMENT, "%s: %s is NULL", func, text_name);
        return BITNET_ERR_INVALID_ARGUMENT;
    }
    if (generates && in_own_callback(m)) {
        bn_set_error(BITNET_ERR_BUSY, "%s: called on a model from inside its own on_token callback", func);
        return BITNET_ERR_BUSY;
    }
    return BITNET_OK;
}

BITNET_API bitnet_params bitnet_params_default(void) {
    bitnet_params p = {0, 0};
    return p;
}

BITNET_API bitnet_gen_params bitnet_gen_params_default(void) {
    /* Keep in step with the defaults of Model.generate (bitnet/engine.py); tests/integration/test_capi.py checks it. */
    bitnet_gen_params p = {128, 0.8f, 40, 0.95f, 0.05f, 1.0f, BITNET_SEED_RANDOM, NULL, NULL};
    return p;
}

BITNET_API const char *bitnet_version(void) {
    return bn_build_version();
}

BITNET_API int bitnet_abi_version(void) {
    return BITNET_ABI_VERSION;
}

BITNET_API void bitnet_string_free(char *s) {
    free(s);
}

/* None for "use the default" (0). */
static PyObject *optional_int(int32_t value) {
    return value == 0 ? Py_NewRef(Py_None) : PyLong_FromLong(value);
}

/* `func`: the API function the caller called, for error messages. */
static bitnet_model *load_model(const char *func, const char *path, const bitnet_params *params) {
    bn_clear_error();
    bitnet_params prm = params ? *params : bitnet_params_default();
    bitnet_model *m = malloc(sizeof *m);
    if (!m) {
        bn_set_error(BITNET_ERR_NO_MEMORY, "%s: out of memory", func);
        return NULL;
    }
    bn_call call;
    if (bn_enter(&call, func) != BITNET_OK) {
        free(m);
        return NULL;
    }
    PyObject *py_path = path ? PyBytes_FromString(path) : Py_NewRef(Py_None);
    PyObject *threads = optional_int(prm.n_threads), *n_ctx = optional_int(prm.n_ctx);
    m->model = py_path && threads && n_ctx
        ? PyObject_CallMethod(bn_shim(), "load", "OOO", py_path, threads, n_ctx) : NULL;
    Py_XDECREF(py_path);
    Py_XDECREF(threads);
    Py_XDECREF(n_ctx);
    if (!m->model) {
        bn_error_from_python(func);
        free(m);
        m = NULL;
    }
    bn_leave(&call);
    return m;
}

BITNET_API bitnet_model *bitnet_model_load(const char *path) {
    return load_model("bitnet_model_load", path, NULL);
}

BITNET_API bitnet_model *bitnet_model_load_ex(const char *path, const bitnet_params *params) {
    return load_model("bitnet_model_load_ex", path, params);
}

BITNET_API void bitnet_model_free(bitnet_model *m) {
    static const char func[] = "bitnet_model_free";
    bn_clear_error();
    if (!m)
        return;
    if (in_own_callback(m)) {
        bn_set_error(BITNET_ERR_BUSY, "%s: called from inside the model's own on_token callback; not freed",
                     func);
        return;
    }
    bn_call call;
    if (bn_enter(&call, func) == BITNET_OK) {
        PyObject *r = PyObject_CallMethod(bn_shim(), "close", "O", m->model);
        if (!r)
            bn_error_from_python(func);
        Py_XDECREF(r);
        Py_DECREF(m->model);
        /* Only now that our reference is gone can the collector free the model (it is a reference cycle). */
        r = PyObject_CallMethod(bn_shim(), "collect", NULL);
        if (!r)
            bn_error_from_python(func);
        Py_XDECREF(r);
        bn_leave(&call);
    }
    free(m);
}

/* A C float field as the Python float a user would have written: 0.8f becomes 0.8, not 0.800000011920929,
   so C and Python give the same samples for the same settings. Uses the shortest decimal that reads back as
   the same float. */
static double float_as_written(float f) {
    if (!isfinite(f))
        return (double)f;
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f)
            return strtod(buf, NULL);
    }
    return (double)f;
}

/* shim.<method>(model, prompt, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed, json_schema,
   grammar). The strings go as bytes (None for NULL) and the shim decodes them, so invalid UTF-8 there is
   reported like an invalid prompt. */
static PyObject *call_generation(const char *method, bitnet_model *m, const char *prompt,
                                 const bitnet_gen_params *p) {
    bitnet_gen_params g = p ? *p : bitnet_gen_params_default();
    PyObject *seed = g.seed == BITNET_SEED_RANDOM ? Py_NewRef(Py_None)
                                                  : PyLong_FromUnsignedLongLong((unsigned long long)g.seed);
    if (!seed)
        return NULL;
    return PyObject_CallMethod(bn_shim(), method, "OyididddNyy", m->model, prompt, (int)g.max_tokens,
                               float_as_written(g.temperature), (int)g.top_k, float_as_written(g.top_p),
                               float_as_written(g.min_p), float_as_written(g.repeat_penalty), seed,
                               g.json_schema, g.grammar);
}

static char *generate_text(const char *func, bitnet_model *m, const char *prompt, const bitnet_gen_params *p) {
    bn_clear_error();
    if (check_model_call(func, m, prompt, "prompt", 1) != BITNET_OK)
        return NULL;
    bn_call call;
    if (bn_enter(&call, func) != BITNET_OK)
        return NULL;
    char *out = NULL;
    PyObject *text = call_generation("generate", m, prompt, p);
    if (!text) {
        bn_error_from_python(func);
    } else {
        char *data;
        Py_ssize_t n;
        if (PyBytes_AsStringAndSize(text, &data, &n) != 0) {
            bn_error_from_python(func);
        } else if (!(out = malloc((size_t)n + 1))) {
            bn_set_error(BITNET_ERR_NO_MEMORY, "%s: out of memory for %zd bytes of text", func, n);
        } else {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
        Py_DECREF(text);
    }
    bn_leave(&call);
    return out;
}

BITNET_API char *bitnet_generate(bitnet_model *m, const char *prompt) {
    return generate_text("bitnet_generate", m, prompt, NULL);
}

BITNET_API char *bitnet_generate_ex(bitnet_model *m, const char *prompt, const bitnet_gen_params *p) {
    return generate_text("bitnet_generate_ex", m, prompt, p);
}

/* Hand one piece to the caller with the GIL released, so a slow callback holds up no other thread's Python. */
static int deliver(bitnet_model *m, int (*on_token)(const char *, void *), const char *piece, void *user) {
    bn_frame frame = {m, tls_callbacks};
    tls_callbacks = &frame;
    PyThreadState *ts = PyEval_SaveThread();
    int stop = on_token(piece, user);
    PyEval_RestoreThread(ts);
    tls_callbacks = frame.outer;
    return stop;
}

BITNET_API int bitnet_generate_stream(bitnet_model *m, const char *prompt, const bitnet_gen_params *p,
                                      int (*on_token)(const char *piece, void *user), void *user) {
    static const char func[] = "bitnet_generate_stream";
    bn_clear_error();
    int rc = check_model_call(func, m, prompt, "prompt", 1);
    if (rc != BITNET_OK)
        return rc;
    if (!on_token)
        return invalid(func, "on_token is NULL");
    bn_call call;
    if ((rc = bn_enter(&call, func)) != BITNET_OK)
        return rc;
    PyObject *stream = call_generation("stream", m, prompt, p);
    if (!stream) {
        rc = bn_error_from_python(func);
    } else {
        for (;;) {
            PyObject *piece = PyIter_Next(stream);
            if (!piece) {
                if (PyErr_Occurred())
                    rc = bn_error_from_python(func);
                break;
            }
            const char *utf8 = PyUnicode_AsUTF8(piece);   /* cached in `piece`, which we hold */
            int stop = utf8 ? deliver(m, on_token, utf8, user) : 1;
            if (!utf8)
                rc = bn_error_from_python(func);
            Py_DECREF(piece);
            if (stop)
                break;
        }
        /* Ends the generation now (when stopped early) and releases the model's generation lock. */
        PyObject *r = PyObject_CallMethod(stream, "close", NULL);
        if (!r && rc == BITNET_OK)
            rc = bn_error_from_python(func);
        PyErr_Clear();
        Py_XDECREF(r);
        Py_DECREF(stream);
    }
    bn_leave(&call);
    if (rc == BITNET_OK)
        bn_clear_error();   /* calls made from inside the callback may have set it */
    return rc;
}

BITNET_API int bitnet_tokenize(bitnet_model *m, const char *text, int32_t *out, int32_t max_out) {
    static const char func[] = "bitnet_tokenize";
    bn_clear_error();
    int rc = check_model_call(func, m, text, "text", 0);
    if (rc != BITNET_OK)
        return rc;
    if (max_out < 0)
        return invalid(func, "max_out is negative");
    if (!out && max_out > 0)
        return invalid(func, "out is NULL but max_out > 0");
    bn_call call;
    if ((rc = bn_enter(&call, func)) != BITNET_OK)
        return rc;
    PyObject *ids = PyObject_CallMethod(bn_shim(), "tokenize", "Oy", m->model, text);
    char *data;
    Py_ssize_t nbytes;
    if (!ids || PyBytes_AsStringAndSize(ids, &data, &nbytes) != 0) {
        rc = bn_error_from_python(func);
    } else {
        Py_ssize_t n = nbytes / (Py_ssize_t)sizeof(int32_t);
        if (n > INT32_MAX) {
            bn_set_error(BITNET_ERR_INVALID_ARGUMENT, "%s: %zd tokens are more than an int can count", func, n);
            rc = BITNET_ERR_INVALID_ARGUMENT;
        } else if (!out) {
            rc = (int)n;   /* counting only */
        } else if (n > max_out) {
            bn_set_error(BITNET_ERR_BUFFER_TOO_SMALL, "%s: the text has %zd tokens, max_out is %d", func, n,
                         (int)max_out);
            rc = BITNET_ERR_BUFFER_TOO_SMALL;
        } else {
            memcpy(out, data, (size_t)nbytes);
            rc = (int)n;
        }
    }
    Py_XDECREF(ids);
    bn_leave(&call);
    return rc;
}
