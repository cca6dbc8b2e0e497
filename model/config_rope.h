/* config_rope.h: reading the RoPE settings of a parsed config.json (model/config_rope.c);
 * used by the config parser, which owns the JSON document. */
#ifndef SQ_MODEL_CONFIG_ROPE_H
#define SQ_MODEL_CONFIG_ROPE_H

#include <jansson.h>

#include "model/config.h"

/* Fill cfg's rope_* fields from the config object `root` (cfg->max_position_embeddings
 * already set): rope_theta and the rope type with its parameters, from the top-level
 * fields, from "rope_parameters", or both when they agree. `origin` names the file. */
sq_status sq_model_config_parse_rope(sq_model_config *cfg, const char *origin, json_t *root);

#endif
