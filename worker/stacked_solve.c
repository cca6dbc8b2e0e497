/* stacked_solve.c: one GPTQ solve for the linears that share an input (see stacked_solve.h). */
#include "worker/stacked_solve.h"

#include "kernels/kernels.h"
#include "quant/gptq.h"

sq_status sq_solve_gptq_stacked(const sq_layer_weights *w, const int *linears, int n, const sq_hessian *h,
                                const sq_quant_options *opt, sq_layer_results *out)
{
    int cols = h->cols, part_rows[SQ_LINEAR_COUNT];
    size_t rows = 0;
    if (n <= 0 || n > SQ_LINEAR_COUNT)
        return sq_fail(SQ_ERR_ARG, "stacked solve: %d linears", n);
    for (int i = 0; i < n; i++) {
        const sq_linear *lin = &w->linear[linears[i]];
        if (lin->in_features != cols)
            return sq_fail(SQ_ERR_MISMATCH, "stacked solve: %s has %d inputs, the Hessian %d",
                           sq_linear_name(linears[i]), lin->in_features, cols);
        part_rows[i] = lin->out_features;
        rows += (size_t)lin->out_features;
    }
    float *W = NULL, *H = NULL;
    sq_quant_result parts[SQ_LINEAR_COUNT];
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&W, rows * cols * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&H, (size_t)cols * cols * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_copy(H, h->H, (size_t)cols * cols * sizeof(float)), done);
    for (int i = 0, row0 = 0; i < n; row0 += part_rows[i++])
        SQ_TRY_GOTO(st, kn_copy(W + (size_t)row0 * cols, w->linear[linears[i]].weight,
                                (size_t)part_rows[i] * cols * sizeof(float)), done);
    SQ_TRY_GOTO(st, sq_gptq_solve_stacked(W, H, cols, opt, n, part_rows, parts), done);
    for (int i = 0; i < n; i++) {
        sq_quant_result_free(&out->linear[linears[i]]);
        out->linear[linears[i]] = parts[i];
    }
done:
    kn_free(W);
    kn_free(H);
    return st;
}
