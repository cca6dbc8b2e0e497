/* group_inputs.c: true-sequential group inputs kept for all samples (see group_inputs.h). */
#include "worker/group_inputs.h"

#include <string.h>

#include "kernels/kernels.h"

void sq_group_inputs_free(sq_group_inputs *g)
{
    kn_free(g->normed);
    kn_free(g->attn);
    kn_free(g->act);
    memset(g, 0, sizeof *g);
}

sq_status sq_group_inputs_reserve(sq_group_inputs *g, const sq_model_config *cfg, int rows)
{
    if (rows <= g->rows)
        return SQ_OK;
    sq_group_inputs_free(g);
    size_t n = (size_t)rows;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&g->normed, n * cfg->hidden_size * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&g->attn, n * cfg->num_heads * cfg->head_dim * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&g->act, n * cfg->intermediate_size * sizeof(float)), fail);
    g->rows = rows;
    return SQ_OK;
fail:
    sq_group_inputs_free(g);
    return sq_fail_context(st, "true-sequential group inputs of %d rows", rows);
}

/* A stage's input and output buffers and their row widths (NULL: the stage has none). */
static void stage_buffers(sq_group_inputs *g, const sq_model_config *cfg, sq_layer_stage_id stage, float **in,
                          int *in_width, float **out, int *out_width)
{
    float *buffer[] = {NULL, g->normed, g->attn, g->normed, g->act, NULL};
    int width[] = {0, cfg->hidden_size, cfg->num_heads * cfg->head_dim, cfg->hidden_size, cfg->intermediate_size, 0};
    *in = buffer[stage], *in_width = width[stage];
    *out = buffer[stage + 1], *out_width = width[stage + 1];
}

sq_status sq_group_inputs_advance(sq_group_inputs *g, const sq_layer_weights *w, const sq_model_config *cfg,
                                  sq_layer_stage_id stage, float *x, int nseq, int seqlen, int micro,
                                  sq_layer_scratch *s, const float **out)
{
    if (stage < 0 || stage >= SQ_STAGE_COUNT || micro <= 0 || (long)nseq * seqlen > g->rows)
        return sq_fail(SQ_ERR_ARG, "group inputs: stage %d of %d sequences x %d (micro %d) does not fit %d rows",
                       (int)stage, nseq, seqlen, micro, g->rows);
    float *in_buf, *out_buf;
    int in_width, out_width;
    stage_buffers(g, cfg, stage, &in_buf, &in_width, &out_buf, &out_width);
    for (int first = 0; first < nseq; first += micro) {
        int n = nseq - first < micro ? nseq - first : micro;
        size_t row0 = (size_t)first * seqlen;
        SQ_TRY(sq_layer_stage(w, cfg, stage, x + row0 * cfg->hidden_size, in_buf ? in_buf + row0 * in_width : NULL,
                              out_buf ? out_buf + row0 * out_width : NULL, n, seqlen, s));
    }
    *out = out_buf;
    return SQ_OK;
}
