/* awq_layer.c: AWQ's search, fold and clip on one decoder layer (see awq_layer.h). */
#include "worker/awq_layer.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "kernels/kernels.h"

typedef struct {
    const char *name;
    int linears[3];
    int count;
} awq_group;

static const awq_group groups[SQ_AWQ_GROUPS] = {
    {"q,k,v", {SQ_LINEAR_Q, SQ_LINEAR_K, SQ_LINEAR_V}, 3},
    {"o", {SQ_LINEAR_O}, 1},
    {"gate,up", {SQ_LINEAR_GATE, SQ_LINEAR_UP}, 2},
    {"down", {SQ_LINEAR_DOWN}, 1},
};

/* o's mean |x| tied per kv head: column (h, d) gets the mean over the heads of h's kv group. */
static void tie_to_kv_heads(const sq_model_config *cfg, const float *mean, float *tied)
{
    int hd = cfg->head_dim, rep = cfg->num_heads / cfg->num_kv_heads;
    for (int j = 0; j < cfg->num_kv_heads; j++)
        for (int d = 0; d < hd; d++) {
            double sum = 0.0;
            for (int h = j * rep; h < (j + 1) * rep; h++)
                sum += mean[h * hd + d];
            for (int h = j * rep; h < (j + 1) * rep; h++)
                tied[h * hd + d] = (float)(sum / rep);
        }
}

/* The group's weights stacked by rows into one device buffer. */
static sq_status stack_group(const sq_layer_weights *w, const awq_group *g, float **W, int *rows)
{
    int cols = w->linear[g->linears[0]].in_features;
    *rows = 0;
    for (int i = 0; i < g->count; i++)
        *rows += w->linear[g->linears[i]].out_features;
    SQ_TRY(kn_alloc((void **)W, (size_t)*rows * cols * sizeof(float)));
    size_t offset = 0;
    for (int i = 0; i < g->count; i++) {
        const sq_linear *lin = &w->linear[g->linears[i]];
        size_t n = (size_t)lin->out_features * cols;
        SQ_TRY(kn_copy(*W + offset, lin->weight, n * sizeof(float)));
        offset += n;
    }
    return SQ_OK;
}

/* Search group g's scales into s (host, [cols]). */
static sq_status search_group(const sq_layer_weights *w, const sq_model_config *cfg, const sq_awq_layer_stats *stats,
                              int g, const sq_awq_options *awq, const sq_quant_options *q, int layer, bool log, float *s)
{
    int cols = w->linear[groups[g].linears[0]].in_features, rows = 0;
    float *W = NULL, *tied = NULL;
    const float *mean = stats->mean[g];
    sq_status st = SQ_OK;
    if (g == SQ_AWQ_ATTN_OUT) {
        tied = malloc((size_t)cols * sizeof *tied);
        if (!tied)
            return sq_fail(SQ_ERR_NOMEM, "awq: cannot hold %d means", cols);
        tie_to_kv_heads(cfg, mean, tied);
        mean = tied;
    }
    sq_awq_search found;
    SQ_TRY_GOTO(st, stack_group(w, &groups[g], &W, &rows), done);
    SQ_TRY_GOTO(st, sq_awq_search_scales(W, rows, cols, stats->H[g], mean, q, awq->n_grid, s, &found), done);
    if (log)
        sq_log_info("layer %d awq %s: alpha %d/%d, output error %.6g (%.6g without scales)", layer, groups[g].name,
                    found.best, awq->n_grid, found.loss, found.loss_plain);
done:
    if (st != SQ_OK)
        sq_fail_context(st, "layer %d awq %s", layer, groups[g].name);
    kn_free(W);
    free(tied);
    return st;
}

/* Device copies of s and 1/s for group g (length n). */
static sq_status upload_scales(const float *s, int n, float *dev_s, float *dev_inv)
{
    float *inv = malloc((size_t)n * sizeof *inv);
    if (!inv)
        return sq_fail(SQ_ERR_NOMEM, "awq: cannot hold %d scales", n);
    for (int c = 0; c < n; c++)
        inv[c] = 1.0f / s[c];
    sq_status st = kn_upload(dev_s, s, (size_t)n * sizeof(float));
    if (st == SQ_OK)
        st = kn_upload(dev_inv, inv, (size_t)n * sizeof(float));
    free(inv);
    return st;
}

/* The folds of awq_layer.h's table, in its order. s[g], inv[g] are device vectors. */
static sq_status fold(sq_layer_weights *w, const sq_model_config *cfg, float *const *s, float *const *inv,
                      float *inv_kv)
{
    for (int g = 0; g < SQ_AWQ_GROUPS; g++)
        for (int i = 0; i < groups[g].count; i++) {
            sq_linear *lin = &w->linear[groups[g].linears[i]];
            SQ_TRY(kn_scale_rows_columns(lin->weight, NULL, s[g], lin->out_features, lin->in_features));
        }
    sq_linear *v = &w->linear[SQ_LINEAR_V], *up = &w->linear[SQ_LINEAR_UP];
    SQ_TRY(kn_scale_rows_columns(w->input_norm, NULL, inv[SQ_AWQ_ATTN], 1, cfg->hidden_size));
    SQ_TRY(kn_scale_rows_columns(v->weight, inv_kv, NULL, v->out_features, v->in_features));
    if (v->bias)
        SQ_TRY(kn_scale_rows_columns(v->bias, NULL, inv_kv, 1, v->out_features));
    SQ_TRY(kn_scale_rows_columns(w->post_attention_norm, NULL, inv[SQ_AWQ_MLP], 1, cfg->hidden_size));
    return kn_scale_rows_columns(up->weight, inv[SQ_AWQ_MLP_OUT], NULL, up->out_features, up->in_features);
}

sq_status sq_awq_layer(sq_layer_weights *w, const sq_model_config *cfg, sq_awq_layer_stats *stats,
                       const sq_awq_options *awq, const sq_quant_options *q, int layer, bool log,
                       sq_folded_tensors *folded)
{
    float *host[SQ_AWQ_GROUPS] = {0}, *s[SQ_AWQ_GROUPS] = {0}, *inv[SQ_AWQ_GROUPS] = {0}, *inv_kv = NULL;
    int cols[SQ_AWQ_GROUPS];
    sq_status st = SQ_OK;
    for (int g = 0; g < SQ_AWQ_GROUPS && st == SQ_OK; g++) {
        cols[g] = w->linear[groups[g].linears[0]].in_features;
        host[g] = malloc((size_t)cols[g] * sizeof(float));
        st = host[g] ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "awq: cannot hold %d scales", cols[g]);
        if (st == SQ_OK)
            st = search_group(w, cfg, stats, g, awq, q, layer, log, host[g]);
        if (st == SQ_OK)
            st = kn_alloc((void **)&s[g], (size_t)cols[g] * sizeof(float));
        if (st == SQ_OK)
            st = kn_alloc((void **)&inv[g], (size_t)cols[g] * sizeof(float));
        if (st == SQ_OK)
            st = upload_scales(host[g], cols[g], s[g], inv[g]);
    }
    /* v_proj's row (kv head j, d) carries o's column (head j·rep, d): the tied scales agree */
    int v_rows = w->linear[SQ_LINEAR_V].out_features, hd = cfg->head_dim, rep = cfg->num_heads / cfg->num_kv_heads;
    float *kv = malloc((size_t)v_rows * sizeof *kv);
    if (st == SQ_OK && !kv)
        st = sq_fail(SQ_ERR_NOMEM, "awq: cannot hold %d scales", v_rows);
    for (int r = 0; st == SQ_OK && r < v_rows; r++)
        kv[r] = 1.0f / host[SQ_AWQ_ATTN_OUT][(r / hd) * rep * hd + r % hd];
    SQ_TRY_GOTO(st, st, done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&inv_kv, (size_t)v_rows * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_upload(inv_kv, kv, (size_t)v_rows * sizeof(float)), done);
    SQ_TRY_GOTO(st, fold(w, cfg, s, inv, inv_kv), done);
    for (int g = 0; g < SQ_AWQ_GROUPS; g++)
        SQ_TRY_GOTO(st, kn_scale_rows_columns(stats->H[g], inv[g], inv[g], cols[g], cols[g]), done);
    for (int g = 0; awq->clip && g < SQ_AWQ_GROUPS; g++)
        for (int i = 0; i < groups[g].count; i++) {
            int id = groups[g].linears[i];
            if (id == SQ_LINEAR_Q || id == SQ_LINEAR_K)
                continue;
            sq_linear *lin = &w->linear[id];
            st = sq_awq_clip(lin->weight, lin->out_features, lin->in_features, stats->H[g], q, awq->n_grid);
            if (st != SQ_OK) {
                sq_fail_context(st, "layer %d awq clip %s", layer, sq_linear_name(id));
                goto done;
            }
        }
    st = sq_folded_tensors_capture(folded, w, cfg->hidden_size);
done:
    for (int g = 0; g < SQ_AWQ_GROUPS; g++) {
        free(host[g]);
        kn_free(s[g]), kn_free(inv[g]);
    }
    free(kv);
    kn_free(inv_kv);
    return st;
}
