/* config.h: a Hugging Face config.json reduced to what a Llama-family decoder needs.
 *
 * Supported architectures: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM.
 * Differences handled: grouped-query attention (num_key_value_heads), RoPE settings in
 * either layout (rope_theta/rope_scaling, or transformers 5's rope_parameters; types
 * "default", "linear", "llama3"), tied embeddings, attention bias
 * (Qwen2 has q/k/v biases; Llama's attention_bias flag), head_dim when given. */
#ifndef SQ_MODEL_CONFIG_H
#define SQ_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/dtype.h"
#include "core/status.h"

typedef enum {
    SQ_ROPE_SCALING_NONE,
    SQ_ROPE_SCALING_LINEAR, /* positions divided by `factor` */
    SQ_ROPE_SCALING_LLAMA3  /* Llama 3.1 frequency-dependent scaling */
} sq_rope_scaling_type;

typedef struct {
    char architecture[64]; /* "LlamaForCausalLM", ... */
    char model_type[32];   /* "llama", "mistral", "qwen2" */
    int hidden_size;
    int intermediate_size;
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim; /* hidden_size / num_heads unless config.json gives it */
    int vocab_size;
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    sq_rope_scaling_type rope_scaling;
    float rope_factor;
    float rope_low_freq_factor;
    float rope_high_freq_factor;
    int rope_original_max_position;
    char rope_theta_from[32]; /* the field rope_theta came from ("rope_parameters.rope_theta", ...); "": default */
    char rope_type_from[48];  /* the field the rope type came from ("rope_scaling.type", ...); "": default */
    bool tie_word_embeddings;
    bool attention_bias; /* q_proj/k_proj/v_proj have biases (o_proj too for Llama's flag) */
    bool o_proj_bias;
    bool mlp_bias;
    int bos_token_id; /* -1 when absent */
    int eos_token_id; /* -1 when absent (first of a list) */
    sq_dtype torch_dtype;
} sq_model_config;

/* Parse config.json text. `origin` names the file in messages; missing or
 * ill-typed required fields are SQ_ERR_FORMAT naming the field. */
sq_status sq_model_config_parse(sq_model_config *cfg, const char *origin, const char *text, size_t len);

/* Read and parse a config.json file. */
sq_status sq_model_config_load(sq_model_config *cfg, const char *path);

/* RoPE inverse frequencies (head_dim/2 values), including rope scaling. */
void sq_model_rope_inv_freq(const sq_model_config *cfg, float *inv_freq);

/* "default", "linear" or "llama3", as config.json spells the rope type. */
const char *sq_rope_scaling_name(sq_rope_scaling_type type);

#endif
