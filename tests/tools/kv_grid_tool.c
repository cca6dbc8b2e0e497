/* kv_grid_tool.c: runs kn_kv_quantize_static (the backend's kernel) over the values
 * read from stdin, one per line, and prints each result (%a, exact), so that tests
 * can compare the int8 and fp8 e4m3 rounding bit for bit with an independent NumPy
 * table of the e4m3 grid.
 *
 *   kv_grid_tool int8|fp8 SCALE < values */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "int8") != 0 && strcmp(argv[1], "fp8") != 0)) {
        fprintf(stderr, "usage: kv_grid_tool int8|fp8 SCALE < values\n");
        return 2;
    }
    float scale = strtof(argv[2], NULL), v;
    size_t n = 0, cap = 1024;
    float *x = malloc(cap * sizeof *x);
    while (x && scanf("%f", &v) == 1) {
        if (n == cap) {
            float *grown = realloc(x, 2 * cap * sizeof *x);
            if (!grown)
                break;
            x = grown, cap *= 2;
        }
        x[n++] = v;
    }
    if (!x || !feof(stdin) || n > (size_t)1 << 30) {
        fprintf(stderr, "kv_grid_tool: unreadable input after %zu values\n", n);
        return 1;
    }
    float *dev = NULL, *dscale = NULL;
    sq_status st = kn_init(0);
    if (st == SQ_OK)
        st = kn_alloc((void **)&dev, (n ? n : 1) * sizeof *x);
    if (st == SQ_OK)
        st = kn_alloc((void **)&dscale, sizeof scale);
    if (st == SQ_OK)
        st = kn_upload(dscale, &scale, sizeof scale);
    if (st == SQ_OK)
        st = kn_upload(dev, x, n * sizeof *x);
    if (st == SQ_OK && n > 0)
        st = kn_kv_quantize_static(dev, dscale, (int)n, 1, 1, strcmp(argv[1], "fp8") == 0 ? KN_KV_FP8 : KN_KV_INT8);
    if (st == SQ_OK)
        st = kn_download(x, dev, n * sizeof *x);
    if (st != SQ_OK) {
        fprintf(stderr, "kv_grid_tool: %s\n", sq_last_error());
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        printf("%a\n", x[i]);
    kn_free(dev);
    kn_free(dscale);
    kn_shutdown();
    free(x);
    return 0;
}
