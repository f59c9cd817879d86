/* Stream the completion of a prompt with libbitnet, printing each piece as soon as it is decoded.
 *
 *   cc stream.c $(python -m bitnet.capi --cflags --libs) -o stream
 *   ./stream [-m MODEL.gguf] [-n MAX_TOKENS] [-t TEMPERATURE] [-s SEED] [-c MAX_PIECES]
 *            [-j JSON_SCHEMA | -g GRAMMAR] PROMPT
 *
 * -c stops the generation from the callback after that many pieces. -j / -g constrain the completion to a JSON
 * schema (JSON text) / a Lark grammar, as in generate.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bitnet.h>

struct progress {
    long pieces;
    long max_pieces;   /* 0: no limit */
};

static int on_token(const char *piece, void *user) {
    struct progress *progress = user;
    fputs(piece, stdout);
    fflush(stdout);
    progress->pieces++;
    return progress->max_pieces > 0 && progress->pieces >= progress->max_pieces;   /* non-zero: stop */
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [-m MODEL] [-n MAX_TOKENS] [-t TEMPERATURE] [-s SEED] [-c MAX_PIECES] "
                    "[-j JSON_SCHEMA | -g GRAMMAR] PROMPT\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL;
    bitnet_gen_params gen = bitnet_gen_params_default();
    struct progress progress = {0, 0};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] == '-' && arg[1] && !arg[2] && i + 1 < argc) {
            const char *value = argv[++i];
            switch (arg[1]) {
            case 'm': model_path = value; break;
            case 'n': gen.max_tokens = atoi(value); break;
            case 't': gen.temperature = strtof(value, NULL); break;
            case 's': gen.seed = strtoull(value, NULL, 10); break;
            case 'c': progress.max_pieces = atol(value); break;
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
    int rc = bitnet_generate_stream(model, prompt, &gen, on_token, &progress);
    putchar('\n');
    if (rc != BITNET_OK)
        fprintf(stderr, "error: %s\n", bitnet_last_error());
    else
        fprintf(stderr, "[%ld pieces]\n", progress.pieces);
    bitnet_model_free(model);
    return rc == BITNET_OK ? 0 : 1;
}
