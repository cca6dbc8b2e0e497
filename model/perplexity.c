/* perplexity.c: windows of the token stream -> model NLL -> perplexity (see perplexity.h).
 * Windows go through the model in passes; each pass streams every layer once,
 * so fewer, larger passes read the weights fewer times. */
#include "model/perplexity.h"

#include <math.h>
#include <stdlib.h>

#include "core/log.h"

/* Default bound on a pass's residual stream (floats): 1 GiB. */
#define PASS_ACTIVATION_FLOATS ((size_t)256 << 20)

/* Where a pass stands, for the per-layer progress lines. */
typedef struct {
    int first_window, n_windows, total_windows, seqlen;
    double started, last_line, every;
} pass_progress;

static void on_layer(void *ctx, int layers_done, int num_layers)
{
    pass_progress *p = ctx;
    double now = sq_now_seconds();
    if (now - p->last_line < p->every)
        return;
    p->last_line = now;
    double tokens = (double)p->n_windows * p->seqlen, elapsed = now - p->started;
    sq_log_info("eval: windows %d-%d of %d: layer %d/%d (%.0f tokens, %.1f s, %.0f tokens/s through the model)",
                p->first_window + 1, p->first_window + p->n_windows, p->total_windows, layers_done, num_layers,
                tokens, elapsed, elapsed > 0 ? tokens * layers_done / num_layers / elapsed : 0.0);
}

sq_status sq_perplexity(sq_model *m, const int32_t *ids, size_t n_ids, const sq_perplexity_options *opt,
                        sq_perplexity_result *result)
{
    const int seqlen = opt->seqlen;
    if (seqlen < 2)
        return sq_fail(SQ_ERR_ARG, "perplexity: seqlen %d must be at least 2", seqlen);
    size_t available = n_ids / (size_t)seqlen;
    if (available == 0)
        return sq_fail(SQ_ERR_ARG, "perplexity: %zu tokens make no window of %d tokens", n_ids, seqlen);
    int windows = available > INT32_MAX ? INT32_MAX : (int)available;
    if (opt->max_windows > 0 && opt->max_windows < windows)
        windows = opt->max_windows;
    int per_pass = opt->windows_per_pass;
    if (per_pass <= 0) {
        size_t fit = PASS_ACTIVATION_FLOATS / ((size_t)seqlen * m->cfg.hidden_size);
        per_pass = fit < 1 ? 1 : fit > (size_t)windows ? windows : (int)fit;
    }
    if (per_pass > windows)
        per_pass = windows;
    float *nll = malloc(sizeof(float) * (size_t)per_pass * (seqlen - 1));
    if (!nll)
        return sq_fail(SQ_ERR_NOMEM, "perplexity: cannot allocate NLL for %d windows", per_pass);
    pass_progress progress = {.total_windows = windows, .seqlen = seqlen, .every = opt->progress_seconds};
    sq_forward_options fopt = {.micro_batch = opt->micro_batch, .kv_cache_bits = opt->kv_cache_bits,
                               .act_bits = opt->act_bits,
                               .kv_cache = opt->kv_cache,
                               .logits_chunk_rows = opt->logits_chunk_rows, .on_layer = on_layer,
                               .on_layer_ctx = &progress};
    double sum = 0.0, t_start = sq_now_seconds();
    long scored = 0;
    sq_status st = SQ_OK;
    for (int w0 = 0; w0 < windows; w0 += per_pass) {
        int n = windows - w0 < per_pass ? windows - w0 : per_pass;
        progress.first_window = w0;
        progress.n_windows = n;
        progress.started = progress.last_line = sq_now_seconds();
        st = sq_model_sequence_nll(m, ids + (size_t)w0 * seqlen, n, seqlen, nll, &fopt);
        if (st != SQ_OK) {
            sq_fail_context(st, "perplexity windows %d..%d", w0, w0 + n - 1);
            break;
        }
        for (size_t i = 0; i < (size_t)n * (seqlen - 1); i++)
            sum += nll[i];
        scored += (long)n * (seqlen - 1);
        sq_log_info("eval: %d/%d windows, running ppl %.4f (%.1f s)", w0 + n, windows, exp(sum / scored),
                    sq_now_seconds() - t_start);
    }
    free(nll);
    if (st != SQ_OK)
        return st;
    result->windows = windows;
    result->tokens = scored;
    result->data_tokens = (long)n_ids;
    result->nll = sum / scored;
    result->ppl = exp(result->nll);
    return SQ_OK;
}
