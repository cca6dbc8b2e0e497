/* assemble.c: the GPTQ checkpoint of a calibration step, from the layer
 * artifacts in the journal (loaded one layer at a time, as the writer asks for
 * each linear) and the source model's other tensors (see assemble.h). */
#include "coordinator/assemble.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/layer.h"
#include "quant/gptq_checkpoint.h"
#include "worker/calibrate.h"
#include "worker/layer_results.h"

typedef struct {
    const sq_journal *journal;
    int step;
    const sq_model_config *cfg;
    int cached_layer; /* the layer whose artifact is in `cached`, -1 if none */
    sq_layer_results cached;
} artifact_source;

/* "model.layers.12.mlp.up_proj" -> layer 12, linear SQ_LINEAR_UP. */
static sq_status parse_linear(const char *name, int *layer, int *linear)
{
    int consumed = 0;
    if (sscanf(name, "model.layers.%d.%n", layer, &consumed) != 1 || consumed == 0)
        return sq_fail(SQ_ERR_ARG, "assemble: %s is not a decoder-layer linear", name);
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        if (strcmp(name + consumed, sq_linear_name(i)) == 0) {
            *linear = i;
            return SQ_OK;
        }
    }
    return sq_fail(SQ_ERR_ARG, "assemble: %s is not a decoder-layer linear", name);
}

static sq_status packed_linear(void *ctx, const char *name, sq_gptq_packed *packed)
{
    artifact_source *src = ctx;
    int layer = -1, linear = -1;
    SQ_TRY(parse_linear(name, &layer, &linear));
    if (layer != src->cached_layer) {
        sq_layer_results_free(&src->cached);
        src->cached_layer = -1;
        const char *sha256 = NULL;
        const char *artifact = sq_journal_layer_artifact(src->journal, src->step, layer, &sha256);
        if (!artifact)
            return sq_fail(SQ_ERR_NOT_FOUND, "assemble: the journal has no artifact for layer %d of step %d", layer,
                           src->step);
        char *path;
        SQ_TRY(sq_journal_fetch_artifact(src->journal, artifact, sha256, &path));
        sq_status st = sq_layer_results_read(&src->cached, layer, path, src->cfg);
        free(path);
        SQ_TRY(st);
        src->cached_layer = layer;
    }
    return sq_gptq_pack(&src->cached.linear[linear], name, packed);
}

sq_status sq_assemble_checkpoint(const sq_journal *journal, int step, const sq_step *step_spec,
                                 const sq_model_config *cfg, const sq_checkpoint *source, const char *output_dir)
{
    int n = cfg->num_layers * SQ_LINEAR_COUNT;
    char **names = calloc((size_t)n, sizeof *names);
    if (!names)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    sq_status st = SQ_OK;
    for (int layer = 0; layer < cfg->num_layers && st == SQ_OK; layer++) {
        for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
            char buf[160];
            snprintf(buf, sizeof buf, "model.layers.%d.%s", layer, sq_linear_name(i));
            names[layer * SQ_LINEAR_COUNT + i] = strdup(buf);
            if (!names[layer * SQ_LINEAR_COUNT + i])
                st = sq_fail(SQ_ERR_NOMEM, "out of memory");
        }
    }
    artifact_source src = {.journal = journal, .step = step, .cfg = cfg, .cached_layer = -1};
    if (st == SQ_OK) {
        sq_gptq_checkpoint_request req = {.source = source,
                                          .linears = (const char *const *)names,
                                          .n_linears = n,
                                          .get_linear = packed_linear,
                                          .ctx = &src,
                                          .options = &step_spec->quant};
        st = sq_gptq_checkpoint_write(&req, output_dir);
    }
    sq_layer_results_free(&src.cached);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return st;
}
