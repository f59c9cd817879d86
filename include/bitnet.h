/*
 * bitnet.h: the C ABI of the bitnet inference engine (libbitnet).
 *
 *     BitNetModel* model = bitnet_model_load("model.gguf");     // NULL: $BITNET_GGUF, else the embedded model
 *     char* response = bitnet_generate(model, "Hello, world!");  // the default generation settings
 *     if (response) puts(response); else fprintf(stderr, "%s\n", bitnet_last_error());
 *     bitnet_string_free(response);
 *     bitnet_model_free(model);
 *
 * Options go to the _ex forms (as with sqlite3_open / sqlite3_open_v2):
 *
 *     bitnet_params lp = bitnet_params_default();
 *     lp.n_threads = 4;
 *     BitNetModel *m = bitnet_model_load_ex("model.gguf", &lp);
 *     bitnet_gen_params p = bitnet_gen_params_default();
 *     p.seed = 42;
 *     char *text = bitnet_generate_ex(m, "Once upon a time", &p);
 *
 * Build: cc app.c $(python -m bitnet.capi --cflags --libs)   (or pkg-config, see capi/README.md)
 *
 * Conventions
 *  - Every string in and out is UTF-8. Text results are malloc'ed, NUL-terminated and freed with
 *    bitnet_string_free().
 *  - A NULL params / gen-params pointer means the defaults. No function crashes on NULL arguments: it fails
 *    with BITNET_ERR_INVALID_ARGUMENT instead.
 *  - Failing calls set a thread-local error message (bitnet_last_error) and code (bitnet_last_error_code);
 *    every call that can fail clears both on entry, so after a success they read "" and BITNET_OK.
 *  - Threads: any thread may call any function. Different models run concurrently. Calls on one shared model
 *    are serialised (each model has one generation state, guarded by a lock): they are safe, not parallel.
 *    Load one model per thread for parallel generation.
 *  - A model must not be freed while another thread still uses it, nor from inside its own on_token callback
 *    (that call is refused).
 *
 * ABI versions (BITNET_ABI_VERSION, bitnet_abi_version())
 *  2: the model type is also named BitNetModel; bitnet_model_load(path) and bitnet_generate(m, prompt) take no
 *     options (the defaults), and their option-taking forms of version 1 are now bitnet_model_load_ex and
 *     bitnet_generate_ex, unchanged. bitnet_generate_stream is unchanged: it keeps its single form, with
 *     options (NULL = the defaults), because a streaming caller writes a callback anyway and a second form
 *     would only save one NULL. bitnet_gen_params ends with json_schema and grammar (structured output).
 *  1: the first version.
 */
#ifndef BITNET_H
#define BITNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BITNET_ABI_VERSION 2

/* Only the functions below are exported from libbitnet; everything else in it is hidden. */
#if defined(_WIN32)
#  if defined(BITNET_BUILDING_LIBRARY)
#    define BITNET_API __declspec(dllexport)
#  else
#    define BITNET_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define BITNET_API __attribute__((visibility("default")))
#else
#  define BITNET_API
#endif

/* Error codes: 0 on success, negative on failure. */
#define BITNET_OK                      0
#define BITNET_ERR_INVALID_ARGUMENT  (-1)   /* NULL pointer, invalid UTF-8, out-of-range parameter */
#define BITNET_ERR_BUFFER_TOO_SMALL  (-2)   /* bitnet_tokenize: max_out too small (needed count in message) */
#define BITNET_ERR_CONTEXT_OVERFLOW  (-3)   /* the prompt does not fit in the model's context */
#define BITNET_ERR_MODEL             (-4)   /* model file missing, not GGUF, malformed or unsupported */
#define BITNET_ERR_BUSY              (-5)   /* re-entrant call on a model from inside its own on_token callback */
#define BITNET_ERR_RUNTIME           (-6)   /* the engine could not start or failed unexpectedly */
#define BITNET_ERR_NO_MEMORY         (-7)

/* seed value meaning "draw a fresh random seed" (C has no None): the Python API's seed=None. Any other
   value, 0 included, seeds the sampler deterministically. With this value the BITNET_SEED environment
   variable, when set, is used as the seed (as in the Python API). */
#define BITNET_SEED_RANDOM UINT64_MAX

/* A loaded model (opaque). BitNetModel is the name of the product description; bitnet_model, the name of ABI
   version 1, stays as the same type. */
typedef struct bitnet_model BitNetModel;
typedef struct bitnet_model bitnet_model;

/* 0 = default: n_threads = the CPUs this process may use, n_ctx = min(the model's training context, 4096). */
typedef struct {
    int32_t n_threads;
    int32_t n_ctx;
} bitnet_params;

/* temperature 0 = greedy; top_k 0, top_p 1, min_p 0, repeat_penalty 1 switch that stage off.
   Start from bitnet_gen_params_default() rather than a literal, so fields added later get their defaults.

   Structured output (needs llguidance: pip install 'bitnet-engine[grammar]'): set at most one of json_schema
   and grammar; the completion is then constrained token by token to match it, and generation stops where the
   schema or grammar is complete (so leave max_tokens room for the whole answer).
     json_schema: a JSON schema as JSON text, e.g.
                    {"type":"object","properties":{"age":{"type":"integer","minimum":0,"maximum":120}},
                     "required":["age"],"additionalProperties":false}
                  (bounded on purpose: without additionalProperties false any other keys may follow, and an
                  unbounded integer may have any number of digits); {"type":"object"} allows any JSON object.
                  The JSON is written compactly (no free whitespace).
     grammar:     a grammar in llguidance's Lark syntax, e.g.  start: "yes" | "no"
   Both are UTF-8 and only read during the call. Both set, or one that does not compile, fails with
   BITNET_ERR_INVALID_ARGUMENT and bitnet_last_error() says why (e.g. "invalid JSON schema: ..."). */
typedef struct {
    int32_t max_tokens;        /* 128 */
    float temperature;         /* 0.8 */
    int32_t top_k;             /* 40 */
    float top_p;               /* 0.95 */
    float min_p;               /* 0.05 */
    float repeat_penalty;      /* 1.0 */
    uint64_t seed;             /* BITNET_SEED_RANDOM */
    const char *json_schema;   /* NULL: no JSON schema */
    const char *grammar;       /* NULL: no grammar */
} bitnet_gen_params;

/* Signature of a streaming callback: `piece` is a NUL-terminated UTF-8 fragment of the completion, valid only
   during the call. Return 0 to continue, non-zero to stop the generation. */
typedef int (*bitnet_token_callback)(const char *piece, void *user);

BITNET_API bitnet_params bitnet_params_default(void);
BITNET_API bitnet_gen_params bitnet_gen_params_default(void);   /* the Python API's defaults */

/* Load a GGUF model with the default params; path NULL = $BITNET_GGUF, else the model embedded in the package.
   Returns NULL on failure (missing or invalid file: BITNET_ERR_MODEL). */
BITNET_API BitNetModel *bitnet_model_load(const char *path);

/* bitnet_model_load with params (NULL = the defaults); bad params fail with BITNET_ERR_INVALID_ARGUMENT. */
BITNET_API BitNetModel *bitnet_model_load_ex(const char *path, const bitnet_params *params);

/* The completion of `prompt` with the default generation settings (bitnet_gen_params_default: sampled with a
   random seed, or BITNET_SEED's), as raw text (no chat template; BOS added when the model file says so),
   exactly as the Python Model.generate returns it. malloc'ed; free with bitnet_string_free. NULL on error. */
BITNET_API char *bitnet_generate(BitNetModel *m, const char *prompt);

/* bitnet_generate with generation settings (NULL = the defaults). */
BITNET_API char *bitnet_generate_ex(BitNetModel *m, const char *prompt, const bitnet_gen_params *p);

/* Like bitnet_generate_ex, but calls on_token for each decoded piece as it is produced (the pieces concatenate
   to bitnet_generate_ex's text). A non-zero return from on_token stops the generation early; that is not an
   error. Returns BITNET_OK, or a negative error code. Only this form exists (see ABI versions above). */
BITNET_API int bitnet_generate_stream(BitNetModel *m, const char *prompt, const bitnet_gen_params *p,
                                      int (*on_token)(const char *piece, void *user), void *user);

/* Token ids of `text` (BOS added when the model file says so) written to out[0..n). Returns n, or a negative
   error code; BITNET_ERR_BUFFER_TOO_SMALL when max_out < n, with n in the message. out NULL with max_out 0
   only counts: it returns n. */
BITNET_API int bitnet_tokenize(BitNetModel *m, const char *text, int32_t *out, int32_t max_out);

BITNET_API void bitnet_string_free(char *s);                    /* NULL is a no-op */
BITNET_API void bitnet_model_free(BitNetModel *m);              /* NULL is a no-op */

/* The message of the last failed call on this thread; "" when none. Valid until the next call on this
   thread. */
BITNET_API const char *bitnet_last_error(void);
BITNET_API int bitnet_last_error_code(void);                    /* BITNET_OK when none */

BITNET_API const char *bitnet_version(void);                    /* the bitnet package version, e.g. "0.1.0" */
BITNET_API int bitnet_abi_version(void);                        /* BITNET_ABI_VERSION of the library */

#ifdef __cplusplus
}
#endif

#endif /* BITNET_H */
