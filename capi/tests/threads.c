/* Concurrency check: THREADS pthreads each run GENERATIONS completions, on their own models ("own") or on one
 * shared model ("shared"), cycling through greedy generate, sampled generate and sampled stream. Every result
 * must equal the expected text given on the command line (computed by Python's Model.generate); any
 * difference means corruption.
 *
 * usage: threads MODEL own|shared THREADS GENERATIONS MAX_TOKENS SEED PROMPT GREEDY_TEXT SAMPLED_TEXT
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bitnet.h>

static const char *g_model_path, *g_prompt, *g_greedy, *g_sampled;
static int g_generations, g_max_tokens;
static unsigned long long g_seed;
static BitNetModel *g_shared;
static atomic_int g_done, g_failures;

struct buffer {
    char data[8192];
    size_t len;
};

static int append(const char *piece, void *user) {
    struct buffer *b = user;
    size_t n = strlen(piece);
    if (b->len + n >= sizeof b->data)
        return 1;
    memcpy(b->data + b->len, piece, n + 1);
    b->len += n;
    return 0;
}

static void fail(int thread, int i, const char *what, const char *got, const char *want) {
    if (atomic_fetch_add(&g_failures, 1) == 0)
        fprintf(stderr, "thread %d generation %d (%s): got [%s] want [%s] error [%s]\n", thread, i, what,
                got ? got : "(null)", want, bitnet_last_error());
}

static void *worker(void *arg) {
    int id = (int)(size_t)arg;
    bitnet_params params = {1, 0};
    BitNetModel *m = g_shared ? g_shared : bitnet_model_load_ex(g_model_path, &params);
    if (!m) {
        fail(id, -1, "load", NULL, "a model");
        return NULL;
    }
    bitnet_gen_params greedy = bitnet_gen_params_default(), sampled = greedy;
    greedy.max_tokens = sampled.max_tokens = g_max_tokens;
    greedy.temperature = 0.0f;
    sampled.seed = g_seed;
    for (int i = 0; i < g_generations; i++) {
        if (i % 3 == 0 || i % 3 == 1) {
            int is_greedy = i % 3 == 0;
            char *text = bitnet_generate_ex(m, g_prompt, is_greedy ? &greedy : &sampled);
            const char *want = is_greedy ? g_greedy : g_sampled;
            if (!text || strcmp(text, want) != 0)
                fail(id, i, is_greedy ? "greedy" : "sampled", text, want);
            bitnet_string_free(text);
        } else {
            struct buffer b = {.len = 0};
            b.data[0] = '\0';
            int rc = bitnet_generate_stream(m, g_prompt, &sampled, append, &b);
            if (rc != BITNET_OK || strcmp(b.data, g_sampled) != 0)
                fail(id, i, "stream", b.data, g_sampled);
        }
        atomic_fetch_add(&g_done, 1);
    }
    if (!g_shared)
        bitnet_model_free(m);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: %s MODEL own|shared THREADS GENERATIONS MAX_TOKENS SEED PROMPT GREEDY SAMPLED\n",
                argv[0]);
        return 2;
    }
    g_model_path = argv[1];
    int shared = strcmp(argv[2], "shared") == 0;
    int n_threads = atoi(argv[3]);
    g_generations = atoi(argv[4]);
    g_max_tokens = atoi(argv[5]);
    g_seed = strtoull(argv[6], NULL, 10);
    g_prompt = argv[7];
    g_greedy = argv[8];
    g_sampled = argv[9];
    if (n_threads < 1 || n_threads > 64)
        return 2;
    if (shared) {
        bitnet_params params = {1, 0};
        if (!(g_shared = bitnet_model_load_ex(g_model_path, &params))) {
            fprintf(stderr, "load: %s\n", bitnet_last_error());
            return 1;
        }
    }
    pthread_t threads[64];
    for (int t = 0; t < n_threads; t++)
        if (pthread_create(&threads[t], NULL, worker, (void *)(size_t)t) != 0)
            return 1;
    for (int t = 0; t < n_threads; t++)
        pthread_join(threads[t], NULL);
    bitnet_model_free(g_shared);
    printf("%d generations, %d failures\n", atomic_load(&g_done), atomic_load(&g_failures));
    return atomic_load(&g_failures) ? 1 : 0;
}
