/* gptq_solve.c: drives one GPTQ, RTN or pruning solve from .npy files so the
 * Python reference tests can compare our results with independent NumPy ones.
 *
 *   gptq_solve --w W.npy (--h H.npy | --x X.npy --seq S) --out DIR
 *              [--method gptq|rtn|sparsegpt|wanda|magnitude] [--bits 4]
 *              [--group-size 128] [--sym 1] [--desc-act 0] [--static-groups 0]
 *              [--damp 0.01] [--block-size 128] [--pack 1] [--preserve-sparsity 0]
 *              [--sparsity 0.5 | --pattern N:M] [--mean M.npy --n-grid 20 --clip 1]
 *
 * --method awq (quant/awq.h): the scale search with M (float32 [in], mean |x|), W := W·diag(s),
 * H := diag(1/s) H diag(1/s), the clipping search (--clip 1), then RTN; also writes
 * awq_scales.npy (float32 [in]), awq_best.txt ("index loss loss_at_alpha_0") and
 * clipped.npy (the scaled, clipped W before RTN).
 *
 * --preserve-sparsity 1: gptq keeps W's zeros at exactly 0 (the mask a pruning
 * step leaves). rtn and magnitude need no H. The pruning methods write wq.npy (the pruned W);
 * sparsegpt also writes loss.txt, and with --bits > 0 (--bits 0: prune only)
 * the codes, grids and g_idx below.
 *
 * W is float32 [out, in]; H float32 [in, in]; or X float32 [nseq*S, in], fed
 * to the Hessian accumulator two sequences at a time (H.npy is then written).
 * Writes DIR/codes.npy (uint8 [out, in]), scales.npy and zeros.npy (float32
 * [out, ngroups]), g_idx.npy (int32 [in]), wq.npy (float32, dequantized) and
 * loss.txt. With --pack 1 it also packs the result into the GPTQ tensors
 * (qweight.npy, qzeros.npy int32; scales_f16.npy float16) and writes their
 * dequantization as deq.npy (float32 [out, in]). Only C-order little-endian arrays of rank 1 or 2 are handled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "kernels/kernels.h"
#include "model/gptq_reader.h"
#include "quant/awq.h"
#include "quant/gptq.h"
#include "quant/gptq_pack.h"
#include "quant/hessian.h"
#include "quant/prune.h"
#include "quant/rtn.h"
#include "quant/sparsegpt.h"

typedef struct {
    char descr[8];
    int ndim;
    long shape[2];
    void *data;
} npy_array;

static int npy_read(const char *path, npy_array *a, const char *want_descr)
{
    char *buf;
    size_t len;
    if (sq_read_file(path, &buf, &len) != SQ_OK || len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        fprintf(stderr, "%s: not an .npy file\n", path);
        return -1;
    }
    size_t hlen = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8), start = 10 + hlen;
    char *header = strndup(buf + 10, hlen);
    char *d = strstr(header, "'descr': '"), *s = strstr(header, "'shape': (");
    memset(a, 0, sizeof *a);
    if (d)
        sscanf(d + 10, "%7[^']", a->descr);
    if (s)
        a->ndim = sscanf(s + 10, "%ld, %ld", &a->shape[0], &a->shape[1]);
    int ok = d && s && strcmp(a->descr, want_descr) == 0 && !strstr(header, "'fortran_order': True") &&
             a->ndim >= 1;
    free(header);
    size_t count = (size_t)a->shape[0] * (a->ndim == 2 ? (size_t)a->shape[1] : 1);
    if (!ok || start + count * 4 != len) {
        fprintf(stderr, "%s: expected a C-order %s array matching the file size\n", path, want_descr);
        free(buf);
        return -1;
    }
    a->data = malloc(count * 4);
    memcpy(a->data, buf + start, count * 4);
    free(buf);
    return 0;
}

static int npy_write(const char *dir, const char *name, const char *descr, int ndim, long d0, long d1,
                     const void *data, size_t elem)
{
    char header[128], shape[64];
    if (ndim == 1)
        snprintf(shape, sizeof shape, "(%ld,)", d0);
    else
        snprintf(shape, sizeof shape, "(%ld, %ld)", d0, d1);
    int n = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    int padded = (10 + n + 1 + 63) / 64 * 64 - 10; /* header ends with '\n' and aligns the data */
    memset(header + n, ' ', (size_t)(padded - n));
    header[padded - 1] = '\n';
    size_t bytes = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1) * elem;
    unsigned char *out = malloc(10 + padded + bytes);
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (unsigned char)(padded & 0xff);
    out[9] = (unsigned char)(padded >> 8);
    memcpy(out + 10, header, (size_t)padded);
    memcpy(out + 10 + padded, data, bytes);
    char *path = sq_path_join(dir, name);
    sq_status st = sq_write_file_atomic(path, out, 10 + padded + bytes);
    free(path);
    free(out);
    return st == SQ_OK ? 0 : -1;
}

static const char *arg(int argc, char **argv, const char *name, const char *fallback)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return fallback;
}

/* --pack: the GPTQ checkpoint tensors of the result and their dequantization. */
static int write_packed(const char *out, const sq_quant_result *res)
{
    sq_gptq_packed p;
    if (sq_gptq_pack(res, "gptq_solve", &p) != SQ_OK)
        return -1;
    float *deq = malloc((size_t)res->rows * res->cols * 4), *scales = malloc((size_t)p.ngroups * p.out * 4);
    sq_convert_to_f32(scales, p.scales, SQ_DTYPE_F16, (size_t)p.ngroups * p.out);
    int bad = sq_gptq_dequantize("gptq_solve", p.qweight, p.qzeros, scales, p.g_idx, p.out, p.in, p.bits,
                                 p.ngroups, deq) != SQ_OK ||
              npy_write(out, "qweight.npy", "<i4", 2, (long)p.in * p.bits / 32, p.out, p.qweight, 4) ||
              npy_write(out, "qzeros.npy", "<i4", 2, p.ngroups, (long)p.out * p.bits / 32, p.qzeros, 4) ||
              npy_write(out, "scales_f16.npy", "<f2", 2, p.ngroups, p.out, p.scales, 2) ||
              npy_write(out, "deq.npy", "<f4", 2, p.out, p.in, deq, 4);
    free(deq);
    free(scales);
    sq_gptq_packed_free(&p);
    return bad ? -1 : 0;
}

static int fail(void)
{
    fprintf(stderr, "gptq_solve: %s\n", sq_last_error());
    return 1;
}

/* --method awq up to RTN: search, scale W and H, clip; the search's files into DIR. */
static int awq_prepare(int argc, char **argv, const char *out, float *W, float *H, int rows, int cols,
                       const sq_quant_options *opt)
{
    npy_array m;
    const char *m_path = arg(argc, argv, "--mean", NULL);
    int n_grid = atoi(arg(argc, argv, "--n-grid", "20")), clip = atoi(arg(argc, argv, "--clip", "1"));
    if (!m_path || npy_read(m_path, &m, "<f4") || m.ndim != 1 || m.shape[0] != cols)
        return 1;
    float *s = malloc((size_t)cols * 4), *inv = malloc((size_t)cols * 4), *ds = NULL, *dinv = NULL;
    float *clipped = malloc((size_t)rows * cols * 4);
    sq_awq_search found;
    if (!s || !inv || !clipped)
        return 1;
    if (sq_awq_search_scales(W, rows, cols, H, m.data, opt, n_grid, s, &found) != SQ_OK)
        return fail();
    for (int c = 0; c < cols; c++)
        inv[c] = 1.0f / s[c];
    if (kn_alloc((void **)&ds, (size_t)cols * 4) || kn_alloc((void **)&dinv, (size_t)cols * 4) ||
        kn_upload(ds, s, (size_t)cols * 4) || kn_upload(dinv, inv, (size_t)cols * 4) ||
        kn_scale_rows_columns(W, NULL, ds, rows, cols) || kn_scale_rows_columns(H, dinv, dinv, cols, cols) ||
        (clip && sq_awq_clip(W, rows, cols, H, opt, n_grid)) || kn_download(clipped, W, (size_t)rows * cols * 4))
        return fail();
    char best[128];
    int n = snprintf(best, sizeof best, "%d %.17g %.17g\n", found.best, found.loss, found.loss_plain);
    char *best_path = sq_path_join(out, "awq_best.txt");
    int bad = npy_write(out, "awq_scales.npy", "<f4", 1, cols, 0, s, 4) ||
              npy_write(out, "clipped.npy", "<f4", 2, rows, cols, clipped, 4) ||
              sq_write_file_atomic(best_path, best, (size_t)n) != SQ_OK;
    free(best_path), free(s), free(inv), free(clipped), free(m.data);
    kn_free(ds), kn_free(dinv);
    return bad ? fail() : 0;
}

/* The device Hessian from --h, or accumulated from --x two sequences at a time
 * (then also written to DIR/H.npy). */
static int load_hessian(int argc, char **argv, const char *out, int cols, sq_hessian *acc)
{
    const char *h_path = arg(argc, argv, "--h", NULL), *x_path = arg(argc, argv, "--x", NULL);
    npy_array h = {0}, x = {0};
    if (h_path) {
        if (npy_read(h_path, &h, "<f4") || h.ndim != 2 || h.shape[0] != cols || h.shape[1] != cols)
            return 1;
        int bad = sq_hessian_init(acc, cols) != SQ_OK || kn_upload(acc->H, h.data, (size_t)cols * cols * 4);
        free(h.data);
        return bad ? fail() : 0;
    }
    int seq = atoi(arg(argc, argv, "--seq", "1"));
    if (!x_path || npy_read(x_path, &x, "<f4") || x.ndim != 2 || x.shape[1] != cols || seq <= 0 || x.shape[0] % seq)
        return 1;
    if (sq_hessian_init(acc, cols) != SQ_OK)
        return fail();
    int nseq = (int)(x.shape[0] / seq);
    for (int s0 = 0; s0 < nseq; s0 += 2) {
        int b = nseq - s0 < 2 ? nseq - s0 : 2;
        const float *batch = (const float *)x.data + (size_t)s0 * seq * cols;
        float *dev;
        if (kn_alloc((void **)&dev, (size_t)b * seq * cols * 4) != SQ_OK ||
            kn_upload(dev, batch, (size_t)b * seq * cols * 4) != SQ_OK || sq_hessian_add(acc, dev, b * seq, b) != SQ_OK)
            return fail();
        kn_free(dev);
    }
    free(x.data);
    if (sq_hessian_finish(acc, nseq) != SQ_OK)
        return fail();
    float *hh = malloc((size_t)cols * cols * 4);
    kn_download(hh, acc->H, (size_t)cols * cols * 4);
    int bad = npy_write(out, "H.npy", "<f4", 2, cols, cols, hh, 4);
    free(hh);
    return bad;
}

/* The pruning options from --sparsity or --pattern N:M and the quantization flags. */
static sq_sparse_options sparse_options(int argc, char **argv)
{
    sq_sparse_options opt = {
        .sparsity = atof(arg(argc, argv, "--sparsity", "0.5")),
        .block_size = atoi(arg(argc, argv, "--block-size", "128")),
        .damp_percent = atof(arg(argc, argv, "--damp", "0.01")),
        .bits = atoi(arg(argc, argv, "--bits", "0")),
        .group_size = atoi(arg(argc, argv, "--group-size", "128")),
        .sym = atoi(arg(argc, argv, "--sym", "1")),
    };
    const char *pattern = arg(argc, argv, "--pattern", NULL);
    if (pattern && sscanf(pattern, "%d:%d", &opt.prune_n, &opt.prune_m) == 2 && opt.prune_m > 0)
        opt.sparsity = (double)opt.prune_n / opt.prune_m;
    return opt;
}

int main(int argc, char **argv)
{
    const char *w_path = arg(argc, argv, "--w", NULL), *out = arg(argc, argv, "--out", NULL);
    const char *method = arg(argc, argv, "--method", "gptq");
    bool is_rtn = strcmp(method, "rtn") == 0, is_magnitude = strcmp(method, "magnitude") == 0;
    bool is_sparsegpt = strcmp(method, "sparsegpt") == 0, is_wanda = strcmp(method, "wanda") == 0;
    bool is_awq = strcmp(method, "awq") == 0;
    bool needs_h = !is_rtn && !is_magnitude;
    bool has_h = arg(argc, argv, "--h", NULL) || arg(argc, argv, "--x", NULL);
    if (!w_path || !out || (needs_h && !has_h) ||
        !(is_rtn || is_magnitude || is_sparsegpt || is_wanda || is_awq || strcmp(method, "gptq") == 0)) {
        fprintf(stderr, "usage: gptq_solve --w W.npy (--h H.npy | --x X.npy --seq S) --out DIR [options]\n");
        return 2;
    }
    sq_quant_options opt = {
        .bits = atoi(arg(argc, argv, "--bits", "4")),
        .group_size = atoi(arg(argc, argv, "--group-size", "128")),
        .sym = atoi(arg(argc, argv, "--sym", "1")),
        .desc_act = atoi(arg(argc, argv, "--desc-act", "0")),
        .static_groups = atoi(arg(argc, argv, "--static-groups", "0")),
        .damp_percent = atof(arg(argc, argv, "--damp", "0.01")),
        .block_size = atoi(arg(argc, argv, "--block-size", "128")),
        .true_sequential = true,
        .preserve_sparsity = atoi(arg(argc, argv, "--preserve-sparsity", "0")),
    };
    sq_sparse_options sparse = sparse_options(argc, argv);
    npy_array w;
    if (npy_read(w_path, &w, "<f4") || w.ndim != 2)
        return 1;
    int rows = (int)w.shape[0], cols = (int)w.shape[1];
    if (kn_init(0) != SQ_OK || sq_make_dirs(out) != SQ_OK)
        return fail();
    float *W;
    if (kn_alloc((void **)&W, (size_t)rows * cols * 4) != SQ_OK || kn_upload(W, w.data, (size_t)rows * cols * 4))
        return fail();
    sq_hessian acc = {0};
    if (needs_h && load_hessian(argc, argv, out, cols, &acc))
        return 1;

    if (is_awq && awq_prepare(argc, argv, out, W, acc.H, rows, cols, &opt))
        return 1;

    sq_quant_result res = {0};
    sq_status st;
    if (is_rtn || is_awq)
        st = sq_rtn_quantize(W, rows, cols, &opt, &res);
    else if (is_magnitude)
        st = sq_magnitude_prune(W, rows, cols, &sparse);
    else if (is_wanda)
        st = sq_wanda_prune(W, acc.H, rows, cols, &sparse);
    else if (is_sparsegpt)
        st = sq_sparsegpt_solve(W, acc.H, rows, cols, &sparse, &res);
    else
        st = sq_gptq_solve(W, acc.H, rows, cols, &opt, &res);
    if (st != SQ_OK)
        return fail();
    if (needs_h)
        sq_hessian_free(&acc);
    float *wq = malloc((size_t)rows * cols * 4);
    kn_download(wq, W, (size_t)rows * cols * 4);
    char loss[64];
    int n = snprintf(loss, sizeof loss, "%.9g\n", res.loss);
    char *loss_path = sq_path_join(out, "loss.txt");
    int bad = npy_write(out, "wq.npy", "<f4", 2, rows, cols, wq, 4);
    if (!is_magnitude && !is_wanda && !is_awq)
        bad = bad || sq_write_file_atomic(loss_path, loss, (size_t)n) != SQ_OK;
    if (res.codes)
        bad = bad || npy_write(out, "codes.npy", "|u1", 2, rows, cols, res.codes, 1) ||
              npy_write(out, "scales.npy", "<f4", 2, rows, res.ngroups, res.scales, 4) ||
              npy_write(out, "zeros.npy", "<f4", 2, rows, res.ngroups, res.zeros, 4) ||
              npy_write(out, "g_idx.npy", "<i4", 1, cols, 0, res.g_idx, 4) ||
              (atoi(arg(argc, argv, "--pack", "0")) && write_packed(out, &res));
    free(loss_path);
    free(wq);
    sq_quant_result_free(&res);
    kn_free(W);
    free(w.data);
    return bad ? fail() : 0;
}
