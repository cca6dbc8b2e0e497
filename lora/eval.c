/* eval.c: perplexity with an adapter (eval.h). */
#include "lora/eval.h"

#include <math.h>
#include <stdlib.h>

#include "lora/trainer.h"

sq_status sq_lora_perplexity(sq_lora_base *b, sq_lora_adapter *a, const int32_t *ids, size_t n, int seqlen,
                             int max_windows, sq_perplexity_result *r, float *token_nll)
{
    if (seqlen < 2)
        return sq_fail(SQ_ERR_ARG, "eval: seqlen %d must be at least 2", seqlen);
    size_t windows = n / (size_t)seqlen;
    if (max_windows > 0 && windows > (size_t)max_windows)
        windows = (size_t)max_windows;
    if (windows == 0)
        return sq_fail(SQ_ERR_ARG, "eval: %zu tokens is less than one window of %d", n, seqlen);
    sq_lora_trainer t;
    SQ_TRY(sq_lora_trainer_init(&t, b, a, true, seqlen, 0));
    int32_t *targets = malloc(sizeof *targets * (size_t)seqlen);
    float *weights = malloc(sizeof *weights * (size_t)seqlen), *nll = malloc(sizeof *nll * (size_t)seqlen);
    sq_status st = targets && weights && nll ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "eval: out of memory");
    double sum = 0.0;
    for (size_t w = 0; st == SQ_OK && w < windows; w++) {
        const int32_t *window = ids + w * seqlen;
        for (int i = 0; i < seqlen; i++) {
            targets[i] = i + 1 < seqlen ? window[i + 1] : -1;
            weights[i] = 1.0f;
        }
        double part;
        st = sq_lora_trainer_run(&t, window, targets, weights, 1, seqlen, false, 0, &part, nll);
        sum += part;
        for (int i = 0; st == SQ_OK && token_nll && i + 1 < seqlen; i++)
            token_nll[w * (seqlen - 1) + i] = nll[i];
    }
    if (st == SQ_OK) {
        r->windows = (int)windows;
        r->tokens = (long)(windows * (seqlen - 1));
        r->data_tokens = (long)n;
        r->nll = sum / (double)r->tokens;
        r->ppl = exp(r->nll);
    }
    free(targets), free(weights), free(nll);
    sq_lora_trainer_free(&t);
    return st;
}
