/* corpus.c: tokenize a whole text file with a model directory's tokenizer. */
#include "model/corpus.h"

#include <stdlib.h>

#include "core/fileio.h"
#include "model/token_ids.h"
#include "tokenizer/tokenizer.h"

sq_status sq_load_corpus_tokens(const char *model_dir, const char *text_path, int32_t **ids, size_t *count)
{
    char *text;
    size_t len;
    SQ_TRY(sq_read_file(text_path, &text, &len));
    sq_tokenizer *tok;
    sq_status st = sq_tokenizer_load(model_dir, &tok);
    if (st == SQ_OK) {
        st = sq_tokenizer_encode(tok, text, len, true, ids, count);
        if (st != SQ_OK)
            sq_fail_context(st, "tokenizing %s", text_path);
        sq_tokenizer_free(tok);
    }
    free(text);
    return st;
}

sq_status sq_load_corpus(const char *model_dir, const char *path, bool token_ids, int vocab_size, int32_t **ids,
                         size_t *count)
{
    if (token_ids)
        return sq_read_token_ids(path, vocab_size, ids, count);
    return sq_load_corpus_tokens(model_dir, path, ids, count);
}
