/* train_layer.c: forward and backward of a decoder layer with LoRA adapters
 * (train_layer.h). Every gradient line names the forward line it inverts. */
#include "lora/train_layer.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

static sq_status alloc_rows(float **p, int rows, int width)
{
    return kn_alloc((void **)p, (size_t)rows * width * sizeof(float));
}

typedef struct {
    int hidden, q_width, kv_width, inter, widest;
} widths;

static widths layer_widths(const sq_model_config *cfg)
{
    widths wd = {0};
    sq_linear_shape(cfg, SQ_LINEAR_Q, &wd.hidden, &wd.q_width); /* the geometry's one home */
    int in;
    sq_linear_shape(cfg, SQ_LINEAR_K, &in, &wd.kv_width);
    sq_linear_shape(cfg, SQ_LINEAR_GATE, &in, &wd.inter);
    wd.widest = wd.hidden > wd.q_width ? wd.hidden : wd.q_width;
    wd.widest = wd.inter > wd.widest ? wd.inter : wd.widest;
    return wd;
}

sq_status sq_lora_tape_alloc(sq_lora_tape *t, const sq_model_config *cfg, const sq_lora_adapter *a, int max_rows)
{
    memset(t, 0, sizeof *t);
    t->max_rows = max_rows;
    widths wd = layer_widths(cfg);
    sq_status st;
    float **hidden_bufs[] = {&t->x0, &t->n1, &t->x1, &t->n2};
    for (size_t i = 0; i < sizeof hidden_bufs / sizeof *hidden_bufs; i++)
        SQ_TRY_GOTO(st, alloc_rows(hidden_bufs[i], max_rows, wd.hidden), fail);
    SQ_TRY_GOTO(st, alloc_rows(&t->q, max_rows, wd.q_width), fail);
    SQ_TRY_GOTO(st, alloc_rows(&t->attn, max_rows, wd.q_width), fail);
    SQ_TRY_GOTO(st, alloc_rows(&t->lse2, max_rows, cfg->num_heads), fail);
    SQ_TRY_GOTO(st, alloc_rows(&t->k, max_rows, wd.kv_width), fail);
    SQ_TRY_GOTO(st, alloc_rows(&t->v, max_rows, wd.kv_width), fail);
    SQ_TRY_GOTO(st, alloc_rows(&t->gate, max_rows, wd.inter), fail);
    SQ_TRY_GOTO(st, alloc_rows(&t->up, max_rows, wd.inter), fail);
    SQ_TRY_GOTO(st, alloc_rows(&t->act, max_rows, wd.inter), fail);
    for (int id = 0; id < SQ_LINEAR_COUNT; id++)
        if (a->targets & (1u << id))
            SQ_TRY_GOTO(st, alloc_rows(&t->u[id], max_rows, a->r), fail);
    return SQ_OK;
fail:
    sq_lora_tape_free(t);
    return st;
}

void sq_lora_tape_free(sq_lora_tape *t)
{
    float *bufs[] = {t->x0, t->n1, t->q, t->k, t->v, t->attn, t->lse2, t->x1, t->n2, t->gate, t->up, t->act};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        kn_free(bufs[i]);
    for (int id = 0; id < SQ_LINEAR_COUNT; id++)
        kn_free(t->u[id]);
    memset(t, 0, sizeof *t);
}

sq_status sq_lora_work_alloc(sq_lora_work *w, const sq_model_config *cfg, const sq_lora_adapter *a, int max_rows)
{
    memset(w, 0, sizeof *w);
    widths wd = layer_widths(cfg);
    sq_status st;
    SQ_TRY_GOTO(st, alloc_rows(&w->dx1, max_rows, wd.hidden), fail);
    SQ_TRY_GOTO(st, alloc_rows(&w->dn, max_rows, wd.hidden), fail);
    SQ_TRY_GOTO(st, alloc_rows(&w->dq, max_rows, wd.q_width), fail);
    SQ_TRY_GOTO(st, alloc_rows(&w->dattn, max_rows, wd.q_width), fail);
    SQ_TRY_GOTO(st, alloc_rows(&w->dk, max_rows, wd.kv_width), fail);
    SQ_TRY_GOTO(st, alloc_rows(&w->dv, max_rows, wd.kv_width), fail);
    SQ_TRY_GOTO(st, alloc_rows(&w->dgate, max_rows, wd.inter), fail);
    SQ_TRY_GOTO(st, alloc_rows(&w->dup, max_rows, wd.inter), fail);
    SQ_TRY_GOTO(st, alloc_rows(&w->dact, max_rows, wd.inter), fail);
    SQ_TRY_GOTO(st, alloc_rows(&w->du, max_rows, a->r), fail);
    if (a->dropout > 0) /* without dropout nothing is masked: no buffer */
        SQ_TRY_GOTO(st, alloc_rows(&w->dropped, max_rows, wd.widest), fail);
    SQ_TRY_GOTO(st, alloc_rows(&w->inv_freq, 1, cfg->head_dim / 2), fail);
    float *inv_freq = malloc(sizeof(float) * (size_t)(cfg->head_dim / 2 + 1));
    if (!inv_freq) {
        st = sq_fail(SQ_ERR_NOMEM, "lora: cannot allocate the RoPE frequencies");
        goto fail;
    }
    sq_model_rope_inv_freq(cfg, inv_freq);
    st = kn_upload(w->inv_freq, inv_freq, sizeof(float) * (size_t)(cfg->head_dim / 2));
    free(inv_freq);
    if (st == SQ_OK)
        return SQ_OK;
fail:
    sq_lora_work_free(w);
    return st;
}

void sq_lora_work_free(sq_lora_work *w)
{
    float *bufs[] = {w->dx1, w->dn, w->dq, w->dk, w->dv, w->dattn, w->dgate, w->dup, w->dact, w->du, w->dropped,
                     w->inv_freq};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        kn_free(bufs[i]);
    memset(w, 0, sizeof *w);
}

/* The dropout mask of one linear in one call. */
static uint64_t module_seed(uint64_t seed, sq_linear_id id) { return seed ^ ((uint64_t)(id + 1) << 56); }

/* y = W x (+ bias) + s B A drop(x); u := A drop(x). With y NULL only u is formed (what the
 * backward needs of the layer's last linear when the forward is rerun to refill the tape). */
static sq_status lora_linear_forward(const sq_layer_weights *w, const sq_lora_adapter *a, int layer, sq_linear_id id,
                                     float *y, const float *x, int rows, float *u, sq_lora_work *work, uint64_t seed)
{
    const sq_linear *lin = &w->linear[id];
    const sq_lora_module *m = sq_lora_find(a, layer, id);
    if (m && y && work->dropout == 0) /* y and u as one product where the backend can */
        return kn_linear_lora(y, u, x, lin->weight, lin->bias, a->params + m->a_offset, a->params + m->b_offset,
                              a->scale, rows, m->in_features, m->out_features, a->r);
    if (y)
        SQ_TRY(kn_linear(y, x, lin->weight, lin->bias, rows, lin->in_features, lin->out_features));
    if (!m)
        return SQ_OK;
    const float *A = a->params + m->a_offset, *B = a->params + m->b_offset;
    const float *xin = x;
    if (work->dropout > 0) {
        SQ_TRY(kn_dropout(work->dropped, x, (size_t)rows * m->in_features, work->dropout, module_seed(seed, id)));
        xin = work->dropped;
    }
    SQ_TRY(kn_linear(u, xin, A, NULL, rows, m->in_features, a->r)); /* u = drop(x) Aᵀ */
    if (!y)
        return SQ_OK;
    return kn_gemm(false, true, rows, m->out_features, a->r, a->scale, u, a->r, B, a->r, 1.0f, y, /* y += s u Bᵀ */
                   m->out_features);
}

/* Inverts lora_linear_forward: dx (+)= dy W + drop(s dy B A); dB += s dyᵀ u; dA += (s dy B)ᵀ drop(x). */
static sq_status lora_linear_backward(const sq_layer_weights *w, const sq_lora_adapter *a, int layer, sq_linear_id id,
                                      float *dx, const float *dy, const float *x, const float *u, int rows,
                                      bool accumulate, sq_lora_work *work, uint64_t seed)
{
    const sq_linear *lin = &w->linear[id];
    /* y = W x: dx = dy W (the frozen W gets no gradient) */
    SQ_TRY(kn_linear_backward(dx, NULL, dy, x, lin->weight, rows, lin->in_features, lin->out_features, accumulate));
    const sq_lora_module *m = sq_lora_find(a, layer, id);
    if (!m)
        return SQ_OK;
    const int in = m->in_features, out = m->out_features, r = a->r;
    const float *A = a->params + m->a_offset, *B = a->params + m->b_offset;
    float *dA = a->grads + m->a_offset, *dB = a->grads + m->b_offset;
    /* y += s u Bᵀ: dB += s dyᵀ u, du = s dy B */
    SQ_TRY(kn_gemm(true, false, out, r, rows, a->scale, dy, out, u, r, 1.0f, dB, r));
    SQ_TRY(kn_gemm(false, false, rows, r, out, a->scale, dy, out, B, r, 0.0f, work->du, r));
    /* u = drop(x) Aᵀ: dA += duᵀ drop(x) (the mask recomputed from the same seed) */
    const float *xin = x;
    if (work->dropout > 0) {
        SQ_TRY(kn_dropout(work->dropped, x, (size_t)rows * in, work->dropout, module_seed(seed, id)));
        xin = work->dropped;
    }
    SQ_TRY(kn_linear_backward(NULL, dA, work->du, xin, A, rows, in, r, false));
    /* and d drop(x) = du A, through the same mask back to x (without dropout: straight into dx) */
    if (work->dropout == 0)
        return kn_linear_backward(dx, NULL, work->du, xin, A, rows, in, r, true);
    SQ_TRY(kn_linear_backward(work->dropped, NULL, work->du, xin, A, rows, in, r, false));
    SQ_TRY(kn_dropout(work->dropped, work->dropped, (size_t)rows * in, work->dropout, module_seed(seed, id)));
    return kn_add_inplace(dx, work->dropped, (size_t)rows * in);
}

sq_status sq_lora_layer_forward(const sq_layer_weights *w, const sq_lora_adapter *a, const sq_model_config *cfg,
                                int layer, const float *x_in, float *x_out, int batch, int seq, sq_lora_tape *t,
                                sq_lora_work *work, uint64_t seed)
{
    const int rows = batch * seq, hidden = cfg->hidden_size, heads = cfg->num_heads, kv_heads = cfg->num_kv_heads;
    const int hd = cfg->head_dim;
    const size_t n_hidden = (size_t)rows * hidden;
    if (batch <= 0 || seq <= 0 || rows > t->max_rows)
        return sq_fail(SQ_ERR_ARG, "lora layer: batch %d x seq %d exceeds the tape (%d rows)", batch, seq, t->max_rows);
    if (t->x0 != x_in)
        SQ_TRY(kn_copy(t->x0, x_in, n_hidden * sizeof(float)));
    /* attention block */
    SQ_TRY(kn_rmsnorm(t->n1, t->x0, w->input_norm, rows, hidden, cfg->rms_norm_eps));
    SQ_TRY(lora_linear_forward(w, a, layer, SQ_LINEAR_Q, t->q, t->n1, rows, t->u[SQ_LINEAR_Q], work, seed));
    SQ_TRY(lora_linear_forward(w, a, layer, SQ_LINEAR_K, t->k, t->n1, rows, t->u[SQ_LINEAR_K], work, seed));
    SQ_TRY(lora_linear_forward(w, a, layer, SQ_LINEAR_V, t->v, t->n1, rows, t->u[SQ_LINEAR_V], work, seed));
    SQ_TRY(kn_rope(t->q, work->inv_freq, batch, seq, heads, hd, 0));
    SQ_TRY(kn_rope(t->k, work->inv_freq, batch, seq, kv_heads, hd, 0));
    SQ_TRY(kn_attention(t->attn, t->lse2, t->q, t->k, t->v, batch, seq, heads, kv_heads, hd));
    SQ_TRY(lora_linear_forward(w, a, layer, SQ_LINEAR_O, t->x1, t->attn, rows, t->u[SQ_LINEAR_O], work, seed));
    SQ_TRY(kn_add_inplace(t->x1, t->x0, n_hidden));
    /* MLP block */
    SQ_TRY(kn_rmsnorm(t->n2, t->x1, w->post_attention_norm, rows, hidden, cfg->rms_norm_eps));
    SQ_TRY(lora_linear_forward(w, a, layer, SQ_LINEAR_GATE, t->gate, t->n2, rows, t->u[SQ_LINEAR_GATE], work,
                               seed));
    SQ_TRY(lora_linear_forward(w, a, layer, SQ_LINEAR_UP, t->up, t->n2, rows, t->u[SQ_LINEAR_UP], work, seed));
    SQ_TRY(kn_swiglu(t->act, t->gate, t->up, (size_t)rows * cfg->intermediate_size));
    SQ_TRY(lora_linear_forward(w, a, layer, SQ_LINEAR_DOWN, x_out, t->act, rows, t->u[SQ_LINEAR_DOWN], work,
                               seed));
    return x_out ? kn_add_inplace(x_out, t->x1, n_hidden) : SQ_OK;
}

sq_status sq_lora_layer_backward(const sq_layer_weights *w, const sq_lora_adapter *a, const sq_model_config *cfg,
                                 int layer, float *dx, int batch, int seq, const sq_lora_tape *t, sq_lora_work *work,
                                 uint64_t seed)
{
    const int rows = batch * seq, hidden = cfg->hidden_size, heads = cfg->num_heads, kv_heads = cfg->num_kv_heads;
    const int hd = cfg->head_dim;
    const size_t n_hidden = (size_t)rows * hidden;
    /* x2 = x1 + down(act): dx1 = dx2 (residual), dact = down_backward(dx2) */
    SQ_TRY(kn_copy(work->dx1, dx, n_hidden * sizeof(float)));
    SQ_TRY(lora_linear_backward(w, a, layer, SQ_LINEAR_DOWN, work->dact, dx, t->act, t->u[SQ_LINEAR_DOWN], rows,
                                false, work, seed));
    /* act = silu(gate) up */
    SQ_TRY(kn_swiglu_backward(work->dgate, work->dup, work->dact, t->gate, t->up,
                              (size_t)rows * cfg->intermediate_size));
    /* gate = gate_proj(n2), up = up_proj(n2): dn2 = both paths */
    SQ_TRY(lora_linear_backward(w, a, layer, SQ_LINEAR_GATE, work->dn, work->dgate, t->n2, t->u[SQ_LINEAR_GATE],
                                rows, false, work, seed));
    SQ_TRY(lora_linear_backward(w, a, layer, SQ_LINEAR_UP, work->dn, work->dup, t->n2, t->u[SQ_LINEAR_UP], rows,
                                true, work, seed));
    /* n2 = rmsnorm(x1): dx1 += rmsnorm_backward(dn2) */
    SQ_TRY(kn_rmsnorm_backward(work->dx1, work->dn, t->x1, w->post_attention_norm, rows, hidden,
                               cfg->rms_norm_eps));
    /* x1 = x0 + o_proj(attn): dx0 = dx1 (residual), dattn = o_backward(dx1) */
    SQ_TRY(lora_linear_backward(w, a, layer, SQ_LINEAR_O, work->dattn, work->dx1, t->attn, t->u[SQ_LINEAR_O], rows,
                                false, work, seed));
    SQ_TRY(kn_copy(dx, work->dx1, n_hidden * sizeof(float)));
    /* attn = attention(q, k, v), q and k rotated: undo the rotation on their gradients */
    SQ_TRY(kn_attention_backward(work->dq, work->dk, work->dv, work->dattn, t->attn, t->lse2, t->q, t->k, t->v,
                                 batch, seq, heads, kv_heads, hd));
    SQ_TRY(kn_rope_backward(work->dq, work->inv_freq, batch, seq, heads, hd, 0));
    SQ_TRY(kn_rope_backward(work->dk, work->inv_freq, batch, seq, kv_heads, hd, 0));
    /* q, k, v = proj(n1): dn1 = sum of the three paths */
    SQ_TRY(lora_linear_backward(w, a, layer, SQ_LINEAR_Q, work->dn, work->dq, t->n1, t->u[SQ_LINEAR_Q], rows, false,
                                work, seed));
    SQ_TRY(lora_linear_backward(w, a, layer, SQ_LINEAR_K, work->dn, work->dk, t->n1, t->u[SQ_LINEAR_K], rows, true,
                                work, seed));
    SQ_TRY(lora_linear_backward(w, a, layer, SQ_LINEAR_V, work->dn, work->dv, t->n1, t->u[SQ_LINEAR_V], rows, true,
                                work, seed));
    /* n1 = rmsnorm(x0): dx0 += rmsnorm_backward(dn1) */
    return kn_rmsnorm_backward(dx, work->dn, t->x0, w->input_norm, rows, hidden, cfg->rms_norm_eps);
}
