/* data.c: packed windows and their seeded order (data.h). */
#include "lora/data.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "tokenizer/tokenizer.h"

sq_status sq_lora_data_from_tokens(sq_lora_data *d, const int32_t *ids, size_t n, int seqlen, uint64_t seed,
                                   const char *origin)
{
    memset(d, 0, sizeof *d);
    if (seqlen < 2)
        return sq_fail(SQ_ERR_ARG, "%s: seqlen %d is too short to train on (needs 2 tokens)", origin, seqlen);
    size_t windows = n / (size_t)seqlen;
    if (windows == 0)
        return sq_fail(SQ_ERR_ARG, "%s: %zu tokens is less than one training window of seqlen %d", origin, n, seqlen);
    if (windows > INT32_MAX)
        return sq_fail(SQ_ERR_ARG, "%s: too many windows (%zu)", origin, windows);
    int32_t *tokens = malloc(windows * seqlen * sizeof *tokens);
    uint8_t *mask = malloc(windows * seqlen);
    if (!tokens || !mask) {
        free(tokens), free(mask);
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot hold %zu training windows", origin, windows);
    }
    memcpy(tokens, ids, windows * seqlen * sizeof *tokens);
    for (size_t i = 0; i < windows * seqlen; i++)
        mask[i] = i % (size_t)seqlen != 0; /* every token but a window's first is predicted */
    sq_lora_data_adopt(d, tokens, mask, (int)windows, seqlen, seed);
    return d->order ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: cannot hold %zu training windows", origin, windows);
}

void sq_lora_data_adopt(sq_lora_data *d, int32_t *tokens, uint8_t *mask, int n_windows, int seqlen, uint64_t seed)
{
    *d = (sq_lora_data){.seqlen = seqlen, .n_windows = n_windows, .tokens = tokens, .mask = mask, .seed = seed,
                        .epoch = -1, .order = malloc(sizeof(int) * (size_t)(n_windows > 0 ? n_windows : 1))};
}

void sq_lora_data_free(sq_lora_data *d)
{
    free(d->tokens);
    free(d->mask);
    free(d->order);
    memset(d, 0, sizeof *d);
}

/* One JSONL example into row `row` of tokens/mask (seqlen wide). */
static sq_status encode_example(const sq_tokenizer *tok, const char *prompt, const char *completion, int seqlen,
                                int32_t *tokens, uint8_t *mask, const char *where)
{
    int32_t *p = NULL, *c = NULL;
    size_t np = 0, nc = 0;
    sq_status st = sq_tokenizer_encode(tok, prompt, strlen(prompt), true, &p, &np);
    if (st == SQ_OK)
        st = sq_tokenizer_encode(tok, completion, strlen(completion), false, &c, &nc);
    int32_t eos = sq_tokenizer_eos_id(tok);
    if (st == SQ_OK && eos < 0)
        st = sq_fail(SQ_ERR_FORMAT, "%s: the tokenizer has no EOS token to end a completion", where);
    int n = 0;
    for (size_t i = 0; st == SQ_OK && i < np && n < seqlen; i++, n++)
        tokens[n] = p[i], mask[n] = 0;
    for (size_t i = 0; st == SQ_OK && i <= nc && n < seqlen; i++, n++)
        tokens[n] = i < nc ? c[i] : eos, mask[n] = 1;
    for (; st == SQ_OK && n < seqlen; n++)
        tokens[n] = eos, mask[n] = 0;
    mask[0] = 0;
    free(p), free(c);
    return st;
}

sq_status sq_lora_data_from_jsonl(sq_lora_data *d, const char *model_dir, const char *path, const char *prompt_field,
                                  const char *completion_field, int seqlen, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    char *text = NULL;
    size_t len = 0;
    SQ_TRY(sq_read_file(path, &text, &len));
    sq_tokenizer *tok = NULL;
    int32_t *tokens = NULL;
    uint8_t *mask = NULL;
    int n = 0, capacity = 0, line_no = 0;
    sq_status st = sq_tokenizer_load(model_dir, &tok);
    for (char *line = text, *next; st == SQ_OK && line < text + len; line = next) {
        line_no++;
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        next = end ? end + 1 : text + len;
        size_t line_len = (size_t)((end ? end : text + len) - line);
        if (strspn(line, " \t\r") >= line_len)
            continue; /* blank line */
        char where[4200];
        snprintf(where, sizeof where, "%s:%d", path, line_no);
        json_error_t err;
        json_t *obj = json_loadb(line, line_len, 0, &err);
        const char *prompt = json_string_value(json_object_get(obj, prompt_field));
        const char *completion = json_string_value(json_object_get(obj, completion_field));
        if (!obj)
            st = sq_fail(SQ_ERR_FORMAT, "%s: invalid JSON: %s", where, err.text);
        else if (!prompt || !completion)
            st = sq_fail(SQ_ERR_FORMAT, "%s: needs string fields \"%s\" and \"%s\"", where, prompt_field,
                         completion_field);
        if (st == SQ_OK && n == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            int32_t *t2 = realloc(tokens, sizeof *tokens * (size_t)capacity * seqlen);
            tokens = t2 ? t2 : tokens;
            uint8_t *m2 = realloc(mask, (size_t)capacity * seqlen);
            mask = m2 ? m2 : mask;
            if (!t2 || !m2)
                st = sq_fail(SQ_ERR_NOMEM, "%s: cannot hold %d examples", path, capacity);
        }
        if (st == SQ_OK)
            st = encode_example(tok, prompt, completion, seqlen, tokens + (size_t)n * seqlen,
                                mask + (size_t)n * seqlen, where);
        n += st == SQ_OK;
        json_decref(obj);
    }
    if (st == SQ_OK && n == 0)
        st = sq_fail(SQ_ERR_ARG, "%s: no training examples", path);
    sq_tokenizer_free(tok);
    free(text);
    if (st != SQ_OK) {
        free(tokens), free(mask);
        return st;
    }
    sq_lora_data_adopt(d, tokens, mask, n, seqlen, seed);
    return d->order ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", path);
}

sq_status sq_lora_data_sequence(sq_lora_data *d, long long k, const int32_t **tokens, const uint8_t **mask)
{
    if (k < 0)
        return sq_fail(SQ_ERR_ARG, "training sequence %lld", k);
    int epoch = (int)(k / d->n_windows);
    if (epoch != d->epoch) {
        sq_rng rng;
        sq_rng_seed(&rng, d->seed + (uint64_t)epoch);
        for (int i = 0; i < d->n_windows; i++)
            d->order[i] = i;
        for (int i = d->n_windows - 1; i > 0; i--) {
            int j = (int)sq_rng_below(&rng, (uint64_t)i + 1);
            int tmp = d->order[i];
            d->order[i] = d->order[j];
            d->order[j] = tmp;
        }
        d->epoch = epoch;
    }
    size_t row = (size_t)d->order[k % d->n_windows] * d->seqlen;
    *tokens = d->tokens + row;
    *mask = d->mask + row;
    return SQ_OK;
}
