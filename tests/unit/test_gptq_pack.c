/* test_gptq_pack.c: GPTQ packing round trips for 2/3/4/8 bits, the 3-bit words
 * that straddle int32 boundaries, the shape rules, and the v1 zero convention. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "model/gptq_reader.h"
#include "quant/gptq_pack.h"

static void fill_result(sq_quant_result *res, int out, int in, int bits, int group_size, unsigned seed)
{
    assert_int_equal(sq_quant_result_alloc(res, out, in, bits, group_size, false), SQ_OK);
    srand(seed);
    int maxq = (1 << bits) - 1;
    for (int k = 0; k < out * in; k++)
        res->codes[k] = (uint8_t)(rand() % (maxq + 1));
    for (int k = 0; k < out * res->ngroups; k++) {
        res->scales[k] = 0.001f * (float)(1 + rand() % 1000);
        res->zeros[k] = (float)(1 + rand() % maxq); /* 1..maxq: representable in v1 */
    }
    for (int i = 0; i < in; i++)
        res->g_idx[i] = (i * 7) % res->ngroups; /* an act-order-like scattered g_idx */
}

/* The packed fp16 scales widened for sq_gptq_dequantize (caller frees). */
static float *scales_f32(const sq_gptq_packed *p)
{
    float *s = malloc(sizeof(float) * p->ngroups * p->out);
    for (int k = 0; k < p->ngroups * p->out; k++)
        s[k] = sq_f16_to_f32(p->scales[k]);
    return s;
}

static void check_round_trip(int bits, int out, int in, int group_size)
{
    sq_quant_result res;
    fill_result(&res, out, in, bits, group_size, (unsigned)(bits * 1000 + out));
    sq_gptq_packed p;
    assert_int_equal(sq_gptq_pack(&res, "layer.q_proj", &p), SQ_OK);
    float *sc = scales_f32(&p);
    float *W = malloc(sizeof(float) * out * in);
    assert_int_equal(sq_gptq_dequantize("layer.q_proj", p.qweight, p.qzeros, sc, p.g_idx, out, in, bits,
                                        p.ngroups, W),
                     SQ_OK);
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            int g = res.g_idx[i];
            float s = sq_f16_to_f32(sq_f32_to_f16(res.scales[o * res.ngroups + g]));
            float expect = s * ((float)res.codes[o * in + i] - res.zeros[o * res.ngroups + g]);
            assert_float_equal(W[o * in + i], expect, 0);
        }
    free(W);
    free(sc);
    sq_gptq_packed_free(&p);
    sq_quant_result_free(&res);
}

static void test_round_trips(void **state)
{
    (void)state;
    int bits[4] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++) {
        check_round_trip(bits[b], 32, 64, 32);
        check_round_trip(bits[b], 96, 128, -1);
        check_round_trip(bits[b], 64, 96, 64); /* last group partial: ngroups = ceil(96/64) */
    }
}

static void test_three_bit_words_straddle(void **state)
{
    (void)state;
    /* One output, 32 inputs, all codes 7 except value 10 = 0b101 and value 21 = 0b110. */
    sq_quant_result res;
    assert_int_equal(sq_quant_result_alloc(&res, 32, 32, 3, -1, true), SQ_OK);
    memset(res.codes, 7, 32 * 32);
    res.codes[10] = 5;
    res.codes[21] = 6;
    for (int o = 0; o < 32; o++) {
        res.scales[o] = 1;
        res.zeros[o] = 4;
    }
    sq_gptq_packed p;
    assert_int_equal(sq_gptq_pack(&res, "x", &p), SQ_OK);
    uint32_t w0 = (uint32_t)p.qweight[0], w1 = (uint32_t)p.qweight[32], w2 = (uint32_t)p.qweight[64];
    /* Word 0: values 0..9 at bits 0..29, low two bits of value 10 (01) at bits 30..31. */
    assert_int_equal(w0, 0x3FFFFFFFu | (1u << 30));
    /* Word 1: bit 0 = high bit of value 10 (1), values 11..20 at bits 1..30, low bit of value 21 (0) at 31. */
    assert_int_equal(w1, 1u | (0x3FFFFFFFu << 1));
    /* Word 2: high bits of value 21 (11) at bits 0..1, values 22..31 at bits 2..31. */
    assert_int_equal(w2, 0xFFFFFFFFu);
    /* qzeros: every output stores zero - 1 = 3 (0b011) in 3 bits, packed along outputs. */
    assert_int_equal((uint32_t)p.qzeros[0] & 0x3FFFFFFFu, 03333333333u);
    sq_gptq_packed_free(&p);
    sq_quant_result_free(&res);
}

static void test_shapes_refused(void **state)
{
    (void)state;
    sq_quant_result res;
    /* in is a multiple of 32, out a multiple of 32/bits (8) but not of 32. */
    fill_result(&res, 40, 64, 4, 32, 1);
    sq_gptq_packed p;
    assert_int_equal(sq_gptq_pack(&res, "model.layers.0.mlp.up_proj", &p), SQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(sq_last_error(), "model.layers.0.mlp.up_proj"));
    assert_non_null(strstr(sq_last_error(), "divisible by 32"));
    sq_quant_result_free(&res);
    fill_result(&res, 12, 64, 2, 32, 2);
    assert_int_equal(sq_gptq_pack(&res, "y", &p), SQ_ERR_UNSUPPORTED);
    sq_quant_result_free(&res);
    assert_int_equal(sq_gptq_check_shape("z", 32, 48, 4), SQ_ERR_UNSUPPORTED);
    assert_int_equal(sq_gptq_check_shape("z", 32, 64, 5), SQ_ERR_UNSUPPORTED);
    assert_int_equal(sq_gptq_check_shape("z", 64, 32, 3), SQ_OK);
}

static void test_bad_g_idx_is_a_format_error(void **state)
{
    (void)state;
    sq_quant_result res;
    fill_result(&res, 32, 32, 4, 32, 3);
    sq_gptq_packed p;
    assert_int_equal(sq_gptq_pack(&res, "w", &p), SQ_OK);
    float *sc = scales_f32(&p);
    p.g_idx[5] = 1;
    float W[32 * 32];
    assert_int_equal(sq_gptq_dequantize("w", p.qweight, p.qzeros, sc, p.g_idx, 32, 32, 4, 1, W),
                     SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), "w.g_idx[5]"));
    free(sc);
    sq_gptq_packed_free(&p);
    sq_quant_result_free(&res);
}

static void test_zero_of_zero_follows_v1(void **state)
{
    (void)state;
    sq_quant_result res;
    fill_result(&res, 32, 32, 4, -1, 4);
    res.zeros[0] = 0;
    res.codes[0] = 3;
    sq_gptq_packed p;
    assert_int_equal(sq_gptq_pack(&res, "w", &p), SQ_OK);
    float *sc = scales_f32(&p);
    assert_int_equal((uint32_t)p.qzeros[0] & 0xF, 0xF); /* -1 wraps to 2^bits - 1 */
    float W[32 * 32];
    assert_int_equal(sq_gptq_dequantize("w", p.qweight, p.qzeros, sc, p.g_idx, 32, 32, 4, 1, W), SQ_OK);
    assert_float_equal(W[0], sq_f16_to_f32(p.scales[0]) * (3.0f - 16.0f), 0);
    free(sc);
    sq_gptq_packed_free(&p);
    sq_quant_result_free(&res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_three_bit_words_straddle),
        cmocka_unit_test(test_shapes_refused),
        cmocka_unit_test(test_bad_g_idx_is_a_format_error),
        cmocka_unit_test(test_zero_of_zero_follows_v1),
    };
    return cmocka_run_group_tests_name("gptq_pack", tests, NULL, NULL);
}
