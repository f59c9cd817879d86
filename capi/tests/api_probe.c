/* Exercises every function of bitnet.h, error paths included, and prints one line per check:
 *     name <TAB> value <TAB> bitnet_last_error_code() <TAB> bitnet_last_error()
 * tests/integration/test_capi.py compiles it, runs it and asserts on the lines.
 *
 * usage: api_probe MODEL.gguf NOT_A_GGUF_FILE
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bitnet.h>

static void report(const char *name, long long value) {
    printf("%s\t%lld\t%d\t%s\n", name, value, bitnet_last_error_code(), bitnet_last_error());
}

static void report_text(const char *name, const char *text) {
    printf("%s\t%s\t%d\t%s\n", name, text ? text : "(null)", bitnet_last_error_code(), bitnet_last_error());
}

struct callback_state {
    BitNetModel *self, *other;
    int calls;
};

/* Inside a callback: calling back into the same model is refused, another model and tokenize work. */
static int probing_callback(const char *piece, void *user) {
    struct callback_state *st = user;
    (void)piece;
    if (st->calls++ == 0) {
        char *same = bitnet_generate(st->self, "a");
        report("callback_generate_same_model", same != NULL);
        bitnet_string_free(same);
        bitnet_model_free(st->self);
        report("callback_free_same_model", 0);
        bitnet_gen_params greedy = bitnet_gen_params_default();
        greedy.max_tokens = 2;
        greedy.temperature = 0.0f;
        char *other = bitnet_generate_ex(st->other, "a", &greedy);
        report("callback_generate_other_model", other != NULL);
        bitnet_string_free(other);
        int32_t ids[64];
        report("callback_tokenize_same_model", bitnet_tokenize(st->self, "a", ids, 64));
    }
    return 1;   /* stop after the first piece */
}

static int count_callback(const char *piece, void *user) {
    (void)piece;
    ++*(int *)user;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL NOT_GGUF\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1], *not_gguf = argv[2];

    report_text("version", bitnet_version());
    report("abi_version", bitnet_abi_version());
    bitnet_gen_params d = bitnet_gen_params_default();
    printf("defaults\t%d %.9g %d %.9g %.9g %.9g %llu\t0\t\n", d.max_tokens, d.temperature, d.top_k, d.top_p,
           d.min_p, d.repeat_penalty, (unsigned long long)d.seed);
    printf("defaults_structured\t%s %s\t0\t\n", d.json_schema ? "set" : "NULL", d.grammar ? "set" : "NULL");
    bitnet_params dp = bitnet_params_default();
    printf("params_defaults\t%d %d\t0\t\n", dp.n_threads, dp.n_ctx);

    /* loading */
    report("load_missing", bitnet_model_load("/nonexistent/model.gguf") != NULL);
    report("load_ex_missing", bitnet_model_load_ex("/nonexistent/model.gguf", NULL) != NULL);
    report("load_not_gguf", bitnet_model_load(not_gguf) != NULL);
    bitnet_params bad = {-1, 0};
    report("load_negative_threads", bitnet_model_load_ex(model_path, &bad) != NULL);
    BitNetModel *embedded = bitnet_model_load(NULL);
    report("load_embedded", embedded != NULL);
    bitnet_model_free(embedded);
    bitnet_params one = {1, 0};
    BitNetModel *m = bitnet_model_load_ex(model_path, &one);
    report("load_ok", m != NULL);
    if (!m)
        return 1;
    BitNetModel *other = bitnet_model_load_ex(model_path, &one);
    bitnet_params tiny_ctx = {1, 4};
    BitNetModel *small = bitnet_model_load_ex(model_path, &tiny_ctx);
    report("load_small_ctx", small != NULL);

    /* generate */
    bitnet_gen_params greedy = bitnet_gen_params_default();
    greedy.max_tokens = 4;
    greedy.temperature = 0.0f;
    report("generate_null_model", bitnet_generate(NULL, "Hello") != NULL);
    report("generate_null_prompt", bitnet_generate(m, NULL) != NULL);
    report("generate_invalid_utf8", bitnet_generate(m, "Hello \xff\xfe world") != NULL);
    report("generate_ex_null_model", bitnet_generate_ex(NULL, "Hello", &greedy) != NULL);
    report("generate_ex_null_prompt", bitnet_generate_ex(m, NULL, &greedy) != NULL);
    report("generate_ex_invalid_utf8", bitnet_generate_ex(m, "Hello \xff\xfe world", &greedy) != NULL);
    bitnet_gen_params negative = greedy;
    negative.max_tokens = -1;
    report("generate_negative_max_tokens", bitnet_generate_ex(m, "Hello", &negative) != NULL);
    bitnet_gen_params nan_temp = greedy;
    nan_temp.temperature = NAN;
    report("generate_nan_temperature", bitnet_generate_ex(m, "Hello", &nan_temp) != NULL);
    report("generate_context_overflow",
           bitnet_generate_ex(small, "one two three four five six seven eight nine ten", &greedy) != NULL);
    char *text = bitnet_generate_ex(m, "Hello", &greedy);
    report("generate_ok", text != NULL);
    bitnet_string_free(text);
    text = bitnet_generate_ex(m, "Hello", NULL);   /* NULL params: the defaults (random seed) */
    report("generate_default_params", text != NULL);
    bitnet_string_free(text);
    text = bitnet_generate(m, "Hello");
    report("generate_defaults", text != NULL);
    bitnet_string_free(text);

    /* structured output: what is refused, and why (test_capi.py checks successful output through the examples) */
    bitnet_gen_params structured = greedy;
    structured.json_schema = "{\"type\":\"nope\"}";
    report("structured_bad_schema", bitnet_generate_ex(m, "Hello", &structured) != NULL);
    structured.json_schema = "{\"type\":";
    report("structured_schema_not_json", bitnet_generate_ex(m, "Hello", &structured) != NULL);
    structured.json_schema = "[\"object\"]";
    report("structured_schema_not_object", bitnet_generate_ex(m, "Hello", &structured) != NULL);
    structured.json_schema = "{\"title\":\"\xff\"}";
    report("structured_schema_invalid_utf8", bitnet_generate_ex(m, "Hello", &structured) != NULL);
    structured.json_schema = NULL;
    structured.grammar = "start: foo";
    report("structured_bad_grammar", bitnet_generate_ex(m, "Hello", &structured) != NULL);
    structured.grammar = "";
    report("structured_empty_grammar", bitnet_generate_ex(m, "Hello", &structured) != NULL);
    structured.json_schema = "{\"type\":\"object\"}";
    structured.grammar = "start: \"yes\" | \"no\"";
    report("structured_both_set", bitnet_generate_ex(m, "Hello", &structured) != NULL);
    report("stream_structured_both_set",
           bitnet_generate_stream(m, "Hello", &structured, count_callback, &(int){0}));
    structured.json_schema = NULL;
    structured.grammar = "start: foo";
    report("stream_structured_bad_grammar",
           bitnet_generate_stream(m, "Hello", &structured, count_callback, &(int){0}));
    /* the failures left the model usable: a valid grammar generates one of its two words */
    structured.grammar = "start: \"yes\" | \"no\"";
    text = bitnet_generate_ex(m, "Is water wet?", &structured);
    report_text("structured_grammar_ok", text);
    bitnet_string_free(text);

    /* stream */
    int pieces = 0;
    report("stream_null_callback", bitnet_generate_stream(m, "Hello", &greedy, NULL, NULL));
    report("stream_null_model", bitnet_generate_stream(NULL, "Hello", &greedy, count_callback, &pieces));
    report("stream_invalid_utf8", bitnet_generate_stream(m, "\xc3\x28", &greedy, count_callback, &pieces));
    report("stream_ok", bitnet_generate_stream(m, "Hello", &greedy, count_callback, &pieces));
    report("stream_pieces", pieces);
    struct callback_state st = {m, other, 0};
    report("stream_stopped_by_callback", bitnet_generate_stream(m, "Hello", &greedy, probing_callback, &st));
    report("stream_callback_calls", st.calls);
    /* the stopped stream released the model: it generates again */
    text = bitnet_generate_ex(m, "Hello", &greedy);
    report("generate_after_stop", text != NULL);
    bitnet_string_free(text);

    /* tokenize */
    int32_t ids[256];
    report("tokenize_null_model", bitnet_tokenize(NULL, "Hello", ids, 256));
    report("tokenize_null_text", bitnet_tokenize(m, NULL, ids, 256));
    report("tokenize_negative_max", bitnet_tokenize(m, "Hello", ids, -1));
    report("tokenize_null_out", bitnet_tokenize(m, "Hello", NULL, 5));
    report("tokenize_invalid_utf8", bitnet_tokenize(m, "\xff", ids, 256));
    const char *sentence = "Hello world, this is a test.";
    int needed = bitnet_tokenize(m, sentence, NULL, 0);
    report("tokenize_count", needed);
    report("tokenize_too_small", bitnet_tokenize(m, sentence, ids, 1));
    int n = bitnet_tokenize(m, sentence, ids, 256);
    printf("tokenize_ids\t");
    for (int i = 0; i < n; i++)
        printf(i ? ",%d" : "%d", ids[i]);
    printf("\t%d\t%s\n", bitnet_last_error_code(), bitnet_last_error());

    /* an error, then a success on the same thread: the success clears it */
    (void)bitnet_generate(NULL, "x");
    report("error_set", bitnet_last_error_code());
    report("tokenize_clears_error", bitnet_tokenize(m, "Hello", ids, 256) > 0);

    bitnet_string_free(NULL);
    bitnet_model_free(NULL);
    report("free_null", 0);
    bitnet_model_free(small);
    bitnet_model_free(other);
    bitnet_model_free(m);
    report("free_ok", 0);
    return 0;
}
