/* nf4_table.h: the 16 values of 4-bit NormalFloat (QLoRA paper, Dettmers et al.
 * 2023, appendix E), as bitsandbytes has them: one list for the quantizer
 * (lora/nf4.c) and both backends' dequantization (kernels/cpu/nf4.c,
 * kernels/cuda/nf4.cu), so all three use the same floats. Use as an
 * initializer: `static const float table[16] = KN_NF4_VALUES;`. */
#ifndef SQ_KERNELS_NF4_TABLE_H
#define SQ_KERNELS_NF4_TABLE_H

#define KN_NF4_VALUES                                                                                          \
    {-1.0f, -0.6961928009986877f, -0.5250730514526794f, -0.39491748809814453f, -0.28444138169288635f,          \
     -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,            \
     0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, \
     1.0f}

#endif
