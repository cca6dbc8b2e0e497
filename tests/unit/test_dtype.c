/* test_dtype.c: bf16/fp16 <-> fp32 conversions against hand-computed IEEE bit patterns:
 * round-to-nearest-even on exact ties, subnormals, signed zero, Inf, NaN and overflow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "core/dtype.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_bf16_rounding(void **state)
{
    (void)state;
    assert_int_equal(sq_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(sq_f32_to_bf16(-2.5f), 0xc020);
    /* Low 16 bits decide: below half rounds down, above half up, exact half to even. */
    assert_int_equal(sq_f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);
    assert_int_equal(sq_f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
    assert_int_equal(sq_f32_to_bf16(from_bits(0x3f808000u)), 0x3f80); /* tie, 0x3f80 is even */
    assert_int_equal(sq_f32_to_bf16(from_bits(0x3f818000u)), 0x3f82); /* tie, 0x3f82 is even */
    /* 1/3 = 0x3eaaaaab -> 0x3eab (0xaaab > 0x8000 rounds up). */
    assert_int_equal(sq_f32_to_bf16(1.0f / 3.0f), 0x3eab);
}

static void test_bf16_specials(void **state)
{
    (void)state;
    assert_int_equal(sq_f32_to_bf16(0.0f), 0x0000);
    assert_int_equal(sq_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(sq_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(sq_f32_to_bf16(-INFINITY), 0xff80);
    /* FLT_MAX = 0x7f7fffff rounds past the largest bf16 (0x7f7f) to Inf. */
    assert_int_equal(sq_f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80);
    /* Subnormal fp32 values keep their top bits; ties go to even. */
    assert_int_equal(sq_f32_to_bf16(from_bits(0x00010000u)), 0x0001);
    assert_int_equal(sq_f32_to_bf16(from_bits(0x00008000u)), 0x0000);
    assert_int_equal(sq_f32_to_bf16(from_bits(0x00018000u)), 0x0002);
    /* NaN stays NaN, including a signalling NaN whose payload sits in the low bits only. */
    uint16_t qnan = sq_f32_to_bf16(NAN);
    assert_int_equal(qnan & 0x7f80, 0x7f80);
    assert_int_not_equal(qnan & 0x007f, 0);
    uint16_t snan = sq_f32_to_bf16(from_bits(0x7f800001u));
    assert_int_equal(snan & 0x7f80, 0x7f80);
    assert_int_not_equal(snan & 0x007f, 0);
}

static void test_bf16_to_f32(void **state)
{
    (void)state;
    assert_int_equal(to_bits(sq_bf16_to_f32(0x3f80)), 0x3f800000u);
    assert_int_equal(to_bits(sq_bf16_to_f32(0x0001)), 0x00010000u); /* 2^-133, subnormal */
    assert_int_equal(to_bits(sq_bf16_to_f32(0x8000)), 0x80000000u);
    assert_true(isinf(sq_bf16_to_f32(0xff80)) && sq_bf16_to_f32(0xff80) < 0);
    assert_true(isnan(sq_bf16_to_f32(0x7fc0)));
    /* Every finite bf16 survives a round trip through fp32. */
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7f80u) == 0x7f80u)
            continue;
        assert_int_equal(sq_f32_to_bf16(sq_bf16_to_f32((uint16_t)h)), h);
    }
}

static void test_f16_rounding(void **state)
{
    (void)state;
    assert_int_equal(sq_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(sq_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(sq_f32_to_f16(0.5f), 0x3800);
    assert_int_equal(sq_f32_to_f16(65504.0f), 0x7bff); /* largest half */
    /* Half spacing at 1.0 is 2^-10: 1 + 2^-11 is a tie (to 0x3c00, even), 1 + 3*2^-11 a tie to 0x3c02. */
    assert_int_equal(sq_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(sq_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(sq_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    /* 1/3 -> 0x3555 (0.333251953125). */
    assert_int_equal(sq_f32_to_f16(1.0f / 3.0f), 0x3555);
}

static void test_f16_overflow_and_specials(void **state)
{
    (void)state;
    /* Between 65504 and the next step 65536 (= Inf), 65520 is the tie: it goes to Inf (even). */
    assert_int_equal(sq_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(sq_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(sq_f32_to_f16(-1e6f), 0xfc00);
    assert_int_equal(sq_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(sq_f32_to_f16(-0.0f), 0x8000);
    uint16_t nan = sq_f32_to_f16(NAN);
    assert_int_equal(nan & 0x7c00, 0x7c00);
    assert_int_not_equal(nan & 0x03ff, 0);
    assert_int_equal(sq_f32_to_f16(-NAN) & 0x8000, 0x8000);
}

static void test_f16_subnormals(void **state)
{
    (void)state;
    assert_int_equal(sq_f32_to_f16(0x1p-14f), 0x0400);            /* smallest normal */
    assert_int_equal(sq_f32_to_f16(0x1p-24f), 0x0001);            /* smallest subnormal */
    assert_int_equal(sq_f32_to_f16(1023 * 0x1p-24f), 0x03ff);     /* largest subnormal */
    assert_int_equal(sq_f32_to_f16(0x1p-25f), 0x0000);            /* tie between 0 and 1: even */
    assert_int_equal(sq_f32_to_f16(3 * 0x1p-25f), 0x0002);        /* tie between 1 and 2: even */
    assert_int_equal(sq_f32_to_f16(0x1p-25f + 0x1p-30f), 0x0001); /* just above the tie */
    assert_int_equal(sq_f32_to_f16(1023.5f * 0x1p-24f), 0x0400);  /* rounds up into the normals */
    assert_int_equal(sq_f32_to_f16(-0x1p-24f), 0x8001);
    assert_int_equal(sq_f32_to_f16(1e-10f), 0x0000);
}

static void test_f16_to_f32(void **state)
{
    (void)state;
    assert_true(sq_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(sq_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
    assert_true(sq_f16_to_f32(0x3555) == 0.333251953125f);
    assert_true(sq_f16_to_f32(0x7bff) == 65504.0f);
    assert_int_equal(to_bits(sq_f16_to_f32(0x8000)), 0x80000000u);
    assert_true(isinf(sq_f16_to_f32(0x7c00)) && sq_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(sq_f16_to_f32(0xfc00)) && sq_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(sq_f16_to_f32(0x7e00)));
    /* Every finite half survives a round trip through fp32. */
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7c00u) == 0x7c00u)
            continue;
        assert_int_equal(sq_f32_to_f16(sq_f16_to_f32((uint16_t)h)), h);
    }
}

static void test_array_conversions(void **state)
{
    (void)state;
    const float src[3] = {1.0f, -2.0f, 0.5f};
    uint16_t half[3], brain[3];
    float back[3];
    assert_int_equal(sq_convert_from_f32(half, SQ_DTYPE_F16, src, 3), SQ_OK);
    assert_int_equal(half[0], 0x3c00);
    assert_int_equal(half[1], 0xc000);
    assert_int_equal(half[2], 0x3800);
    assert_int_equal(sq_convert_from_f32(brain, SQ_DTYPE_BF16, src, 3), SQ_OK);
    assert_int_equal(brain[1], 0xc000);
    assert_int_equal(sq_convert_to_f32(back, brain, SQ_DTYPE_BF16, 3), SQ_OK);
    assert_memory_equal(back, src, sizeof src);
    assert_int_equal(sq_convert_to_f32(back, half, SQ_DTYPE_I32, 1), SQ_ERR_UNSUPPORTED);
    assert_int_equal(sq_dtype_size(SQ_DTYPE_BF16), 2);
    assert_int_equal(sq_dtype_size(SQ_DTYPE_I64), 8);
    sq_dtype dt;
    assert_int_equal(sq_dtype_from_name("BF16", &dt), SQ_OK);
    assert_int_equal(dt, SQ_DTYPE_BF16);
    assert_int_equal(sq_dtype_from_name("F8", &dt), SQ_ERR_FORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_rounding),      cmocka_unit_test(test_bf16_specials),
        cmocka_unit_test(test_bf16_to_f32),        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_f16_overflow_and_specials), cmocka_unit_test(test_f16_subnormals),
        cmocka_unit_test(test_f16_to_f32),         cmocka_unit_test(test_array_conversions),
    };
    return cmocka_run_group_tests_name("dtype", tests, NULL, NULL);
}
