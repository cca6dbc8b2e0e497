/* eval.c: perplexity with an adapter (eval.h). */
#include "lora/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lora/peft_import.h"
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

sq_status sq_lora_eval_adapter(const char *adapter_dir, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                               const int32_t *ids, size_t n, int seqlen, int max_windows, sq_perplexity_result *r,
                               float *token_nll)
{
    sq_lora_adapter adapter = {0};
    sq_lora_base base = {0};
    char *base_quant = NULL;
    SQ_TRY(sq_peft_import(adapter_dir, cfg, &adapter, &base_quant));
    /* a GPTQ base is read as stored (dequantized from its codes), as training read it */
    sq_lora_base_kind kind = !strcmp(base_quant, "nf4") ? SQ_LORA_BASE_NF4 : SQ_LORA_BASE_AS_STORED;
    sq_status st = strcmp(base_quant, "nf4") && strcmp(base_quant, "gptq") && strcmp(base_quant, "none")
                       ? sq_fail(SQ_ERR_FORMAT, "%s: manifest base_quant \"%s\" is not nf4, gptq or none", adapter_dir,
                                 base_quant)
                       : sq_lora_base_open(&base, cfg, ckpt, kind);
    if (st == SQ_OK)
        st = sq_lora_perplexity(&base, &adapter, ids, n, seqlen, max_windows, r, token_nll);
    sq_lora_base_close(&base);
    sq_lora_adapter_free(&adapter);
    free(base_quant);
    return st;
}
