/* group_inputs.h: the inputs of a layer's true-sequential groups (q,k,v | o |
 * gate,up | down), kept for all of a rank's samples. Each group's Hessian is then
 * taken from the stage that follows the groups already quantized, instead of
 * running the layer again from its input up to that group: one pass of the layer
 * per layer in all, for the memory of three activations of every sample (widths
 * hidden, heads*head_dim and intermediate). */
#ifndef SQ_WORKER_GROUP_INPUTS_H
#define SQ_WORKER_GROUP_INPUTS_H

#include "core/status.h"
#include "model/config.h"
#include "model/layer.h"

typedef struct {
    int rows;      /* capacity in rows (sequences * seqlen) */
    float *normed; /* [rows, hidden]: input of q,k,v, then of gate,up */
    float *attn;   /* [rows, heads*head_dim]: input of o */
    float *act;    /* [rows, intermediate]: input of down */
} sq_group_inputs;

/* Make room for `rows` rows (keeps the buffers when they are large enough). */
sq_status sq_group_inputs_reserve(sq_group_inputs *g, const sq_model_config *cfg, int rows);
void sq_group_inputs_free(sq_group_inputs *g);

/* Run `stage` of layer w over nseq sequences of seqlen tokens, micro sequences per
 * call: x [nseq*seqlen, hidden] is the residual stream (MLP_INPUT and OUTPUT update
 * it), the stage reads the previous stage's output from g and writes its own there.
 * *out: the stage's output, the input of the next group (NULL after OUTPUT). */
sq_status sq_group_inputs_advance(sq_group_inputs *g, const sq_layer_weights *w, const sq_model_config *cfg,
                                  sq_layer_stage_id stage, float *x, int nseq, int seqlen, int micro,
                                  sq_layer_scratch *s, const float **out);

#endif
