/* tokenizer_json.h: checked reads of tokenizer.json fields, shared by the
 * tokenizer loaders (tokenizer_load.c: model, vocab, added tokens, config;
 * tokenizer_pipeline.c: normalizer, pre-tokenizer, decoder, post-processor).
 * Every failure names the file and the JSON path. Internal to the tokenizer. */
#ifndef SQ_TOKENIZER_TOKENIZER_JSON_H
#define SQ_TOKENIZER_TOKENIZER_JSON_H

#include <jansson.h>

#include "tokenizer/tokenizer_internal.h"

/* Ids above this are rejected before anything is sized by them. */
#define SQ_TK_MAX_VOCAB (1u << 24)

typedef struct {
    const char *file; /* named in every error */
    sq_tokenizer *t;
} sq_tk_loader;

/* SQ_ERR_FORMAT "<file>: <path>: <what>". */
sq_status sq_tkj_bad(const sq_tk_loader *L, const char *path, const char *what);
/* SQ_ERR_UNSUPPORTED for a component type this build does not handle. */
sq_status sq_tkj_unsupported(const sq_tk_loader *L, const char *path, const char *type);
/* Optional boolean member: absent or null keeps *out; anything but a bool is an error. */
sq_status sq_tkj_bool(const sq_tk_loader *L, json_t *obj, const char *path, const char *key, bool *out);
/* String member; when absent *s is NULL, an error only if `required`. */
sq_status sq_tkj_string(const sq_tk_loader *L, json_t *obj, const char *path, const char *key, bool required,
                        const char **s, size_t *len);
/* obj must be an object with a string "type". */
sq_status sq_tkj_type(const sq_tk_loader *L, json_t *obj, const char *path, const char **type);
/* A token id: an integer in [0, SQ_TK_MAX_VOCAB). */
sq_status sq_tkj_id(const sq_tk_loader *L, json_t *v, const char *path, int32_t *id);

/* Copy len bytes into a new NUL-terminated string (NULL when out of memory). */
char *sq_tk_dup(const char *s, size_t len);
/* Store the text of token `id` (id < t->vocab_size). */
sq_status sq_tk_set_token(sq_tokenizer *t, int32_t id, const char *s, size_t len);

/* The pipeline components (tokenizer_pipeline.c); a null member is "none". */
sq_status sq_tk_load_normalizer(const sq_tk_loader *L, json_t *obj, const char *path);
sq_status sq_tk_load_pre_tokenizer(const sq_tk_loader *L, json_t *obj, const char *path);
sq_status sq_tk_load_decoder(const sq_tk_loader *L, json_t *obj, const char *path);
sq_status sq_tk_load_post_processor(const sq_tk_loader *L, json_t *obj, const char *path);

#endif
