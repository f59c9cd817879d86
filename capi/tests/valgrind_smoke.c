/* A short run of every libbitnet entry point, for valgrind (tests/integration/test_capi.py): load, generate,
 * stream (stopped early), tokenize, structured output (a grammar; a bad JSON schema), a few error paths (through
 * both forms of load and generate), free.
 *
 * usage: valgrind_smoke MODEL
 */
#include <stdio.h>
#include <string.h>

#include <bitnet.h>

static int stop_after_one(const char *piece, void *user) {
    *(size_t *)user += strlen(piece);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    bitnet_params params = {1, 64};
    BitNetModel *m = bitnet_model_load_ex(argv[1], &params);
    if (!m) {
        fprintf(stderr, "load: %s\n", bitnet_last_error());
        return 1;
    }
    bitnet_gen_params gen = bitnet_gen_params_default();
    gen.max_tokens = 3;
    gen.seed = 1;
    char *text = bitnet_generate_ex(m, "Hello", &gen);
    if (!text) {
        fprintf(stderr, "generate: %s\n", bitnet_last_error());
        return 1;
    }
    size_t streamed = 0;
    int rc = bitnet_generate_stream(m, "Hello", &gen, stop_after_one, &streamed);
    int32_t ids[32];
    int n = bitnet_tokenize(m, "Hello world", ids, 32);
    int too_small = bitnet_tokenize(m, "Hello world", ids, 1);
    char *bad = bitnet_generate_ex(m, "\xff", &gen);
    int bad_code = bitnet_last_error_code();
    char *null_prompt = bitnet_generate(m, NULL);
    /* a grammar that completes in a token or two: the constrained path stays cheap under memcheck */
    bitnet_gen_params yes_no = gen;
    yes_no.grammar = "start: \"yes\" | \"no\"";
    char *answer = bitnet_generate_ex(m, "Hello", &yes_no);
    bitnet_gen_params bad_schema = gen;
    bad_schema.json_schema = "{\"type\":\"nope\"}";
    char *rejected = bitnet_generate_ex(m, "Hello", &bad_schema);
    int rejected_code = bitnet_last_error_code();
    BitNetModel *missing = bitnet_model_load("/nonexistent/model.gguf");
    int answered = answer && (strcmp(answer, "yes") == 0 || strcmp(answer, "no") == 0);
    printf("text=%zu streamed=%zu rc=%d ids=%d too_small=%d bad=%d/%d null=%d missing=%d answer=%s "
           "bad_schema=%d/%d\n", strlen(text), streamed, rc, n, too_small, bad != NULL, bad_code,
           null_prompt != NULL, missing != NULL, answer ? answer : "(null)", rejected != NULL, rejected_code);
    bitnet_string_free(text);
    bitnet_string_free(answer);
    bitnet_model_free(m);
    return rc == BITNET_OK && n > 0 && too_small == BITNET_ERR_BUFFER_TOO_SMALL && !bad && !null_prompt && !missing
        && answered && !rejected && rejected_code == BITNET_ERR_INVALID_ARGUMENT ? 0 : 1;
}
