/* The C example of the product description, as written: load model.gguf from the current folder and print the
 * completion of "Hello, world!" with the default settings (sampled; BITNET_SEED=N makes it repeatable).
 *
 *   cc hello.c $(python -m bitnet.capi --cflags --libs) -o hello && ./hello
 *
 * tests/integration/test_capi.py checks that the description's two lines are here verbatim, one after the other.
 */
#include <bitnet.h>
#include <stdio.h>

int main(void) {
    BitNetModel* model = bitnet_model_load("model.gguf");
    char* response = bitnet_generate(model, "Hello, world!");
    if (!response) {   /* after a failed load this says "model is NULL"; check `model` first to get the cause */
        fprintf(stderr, "error: %s\n", bitnet_last_error());
        bitnet_model_free(model);
        return 1;
    }
    printf("%s\n", response);
    bitnet_string_free(response);
    bitnet_model_free(model);
    return 0;
}
