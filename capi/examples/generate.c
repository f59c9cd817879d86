/* Print the completion of a prompt with libbitnet.
 *
 *   cc generate.c $(python -m bitnet.capi --cflags --libs) -o generate
 *   ./generate [-m MODEL.gguf] [-n MAX_TOKENS] [-t TEMPERATURE] [-s SEED] [-k TOP_K] [-p TOP_P]
 *              [-j JSON_SCHEMA | -g GRAMMAR] PROMPT
 *
 * Without -m it uses the model embedded in the bitnet package; without -s the seed is random. -j constrains the
 * completion to a JSON schema (JSON text), -g to a Lark grammar, e.g.
 *   ./generate -j '{"type":"object","properties":{"age":{"type":"integer","minimum":0,"maximum":120}},
 *                   "required":["age"],"additionalProperties":false}' "A person:"
 *   ./generate -g 'start: "yes" | "no"' "Is water wet?"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bitnet.h>

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [-m MODEL] [-n MAX_TOKENS] [-t TEMPERATURE] [-s SEED] [-k TOP_K] [-p TOP_P] "
                    "[-j JSON_SCHEMA | -g GRAMMAR] PROMPT\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL;
    bitnet_gen_params gen = bitnet_gen_params_default();
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] == '-' && arg[1] && !arg[2] && i + 1 < argc) {
            const char *value = argv[++i];
            switch (arg[1]) {
            case 'm': model_path = value; break;
            case 'n': gen.max_tokens = atoi(value); break;
            case 't': gen.temperature = strtof(value, NULL); break;
            case 's': gen.seed = strtoull(value, NULL, 10); break;
            case 'k': gen.top_k = atoi(value); break;
            case 'p': gen.top_p = strtof(value, NULL); break;
            case 'j': gen.json_schema = value; break;
            case 'g': gen.grammar = value; break;
            default: return usage(argv[0]);
            }
        } else if (!prompt) {
            prompt = arg;
        } else {
            return usage(argv[0]);
        }
    }
    if (!prompt)
        return usage(argv[0]);

    BitNetModel *model = bitnet_model_load(model_path);
    if (!model) {
        fprintf(stderr, "error: %s\n", bitnet_last_error());
        return 1;
    }
    char *text = bitnet_generate_ex(model, prompt, &gen);
    if (!text) {
        fprintf(stderr, "error: %s\n", bitnet_last_error());
        bitnet_model_free(model);
        return 1;
    }
    printf("%s\n", text);
    bitnet_string_free(text);
    bitnet_model_free(model);
    return 0;
}
