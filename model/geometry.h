/* geometry.h: the shapes of a decoder layer's linears, in one place.
 *
 * Widths such as num_heads * head_dim come from config.json; computed in int
 * they can overflow for hostile values. sq_model_geometry_check computes every
 * width in 64 bits and bounds it (config parsing calls it, so every parsed
 * sq_model_config passes it); after that sq_linear_shape's int arithmetic is
 * safe, and every part of the program asks it rather than multiplying itself. */
#ifndef SQ_MODEL_GEOMETRY_H
#define SQ_MODEL_GEOMETRY_H

#include "core/status.h"
#include "model/config.h"

/* The largest width of any linear or activation row, and the most layers. */
#define SQ_MODEL_MAX_WIDTH (1 << 20)
#define SQ_MODEL_MAX_LAYERS (1 << 16)

typedef enum {
    SQ_LINEAR_Q,
    SQ_LINEAR_K,
    SQ_LINEAR_V,
    SQ_LINEAR_O,
    SQ_LINEAR_GATE,
    SQ_LINEAR_UP,
    SQ_LINEAR_DOWN,
    SQ_LINEAR_COUNT
} sq_linear_id;

/* SQ_ERR_FORMAT naming `origin` and the field when a width or the layer count is out of range. */
sq_status sq_model_geometry_check(const sq_model_config *cfg, const char *origin);

/* in_features and out_features of linear `id` (cfg passed sq_model_geometry_check). */
void sq_linear_shape(const sq_model_config *cfg, sq_linear_id id, int *in_features, int *out_features);

#endif
