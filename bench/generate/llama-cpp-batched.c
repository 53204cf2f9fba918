// Batched greedy decoding with llama.cpp's C API (the library that PyPI llama-cpp-python builds),
// for bench.py: B copies of a prompt, one sequence id each, argmax per row, decode tokens/s.
// Build: cc -O2 llama-cpp-batched.c -I$SITE/include -L$SITE/llama_cpp/lib -lllama -Wl,-rpath,...
// Usage: llama-cpp-batched MODEL BATCH TOKENS THREADS "PROMPT"  -> one JSON line on stdout
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void quiet(enum ggml_log_level level, const char* text, void* user) { (void)level, (void)text, (void)user; }

int main(int argc, char** argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s MODEL BATCH TOKENS THREADS PROMPT\n", argv[0]);
        return 2;
    }
    const int B = atoi(argv[2]), N = atoi(argv[3]), threads = atoi(argv[4]);
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    // no AMX/repacked weight buffers: AMX tiles raise SIGILL where the kernel does not grant them
    // (the dev VM), and plain Q4_1 kernels are what a portable build runs
    mp.use_extra_bufts = getenv("LLAMA_EXTRA_BUFTS") != NULL;
    struct llama_model* model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    const struct llama_vocab* vocab = llama_model_get_vocab(model);
    llama_token prompt[512];
    const int P = llama_tokenize(vocab, argv[5], (int)strlen(argv[5]), prompt, 512, 1, 0);
    if (P <= 0) return 1;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(B * (P + N) + 64);
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = 512;
    cp.n_seq_max = (uint32_t)B;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    struct llama_context* ctx = llama_init_from_model(model, cp);
    if (!ctx) return 1;
    const int V = llama_vocab_n_tokens(vocab);
    struct llama_batch batch = llama_batch_init(B * P > B ? B * P : B, 0, 1);

    // prefill: every row gets the prompt; logits only at each row's last token
    batch.n_tokens = 0;
    for (int s = 0; s < B; ++s)
        for (int p = 0; p < P; ++p) {
            const int i = batch.n_tokens++;
            batch.token[i] = prompt[p];
            batch.pos[i] = p;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = s;
            batch.logits[i] = p == P - 1;
        }
    const double t0 = now();
    if (llama_decode(ctx, batch) != 0) return 1;
    const double t1 = now();
    int* first = calloc((size_t)N, sizeof(int));
    for (int step = 0; step < N; ++step) {
        llama_token next[4096];
        for (int s = 0; s < B; ++s) {
            const float* lg = llama_get_logits_ith(ctx, step == 0 ? s * P + P - 1 : s);
            int best = 0;
            for (int v = 1; v < V; ++v)
                if (lg[v] > lg[best]) best = v;
            next[s] = best;
        }
        first[step] = next[0];
        batch.n_tokens = B;
        for (int s = 0; s < B; ++s) {
            batch.token[s] = next[s];
            batch.pos[s] = P + step;
            batch.n_seq_id[s] = 1;
            batch.seq_id[s][0] = s;
            batch.logits[s] = 1;
        }
        if (step + 1 < N && llama_decode(ctx, batch) != 0) return 1;
    }
    const double t2 = now();
    printf("{\"batch\": %d, \"tokens\": %d, \"prefill_seconds\": %.6f, \"decode_seconds\": %.6f, "
           "\"tokens_per_second\": %.3f, \"first_ids\": [",
           B, N, t1 - t0, t2 - t1, (double)B * (N - 1) / (t2 - t1));
    for (int i = 0; i < N; ++i) printf("%s%d", i ? ", " : "", first[i]);
    printf("]}\n");
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
