/* rope_inv_freq.c: prints the RoPE inverse frequencies shardq derives from a config.json, one per
 * line, so tests can compare them with an independent NumPy computation.
 *
 *   rope_inv_freq CONFIG.json */
#include <stdio.h>
#include <stdlib.h>

#include "model/config.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: rope_inv_freq CONFIG.json\n");
        return 2;
    }
    sq_model_config cfg;
    if (sq_model_config_load(&cfg, argv[1]) != SQ_OK) {
        fprintf(stderr, "rope_inv_freq: %s\n", sq_last_error());
        return 1;
    }
    float *inv_freq = malloc((size_t)(cfg.head_dim / 2) * sizeof *inv_freq);
    if (!inv_freq)
        return 1;
    sq_model_rope_inv_freq(&cfg, inv_freq);
    for (int i = 0; i < cfg.head_dim / 2; i++)
        printf("%.9g\n", inv_freq[i]);
    free(inv_freq);
    return 0;
}
