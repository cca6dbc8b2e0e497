/* output_format.c: format names and what each format can hold (see output_format.h). */
#include "quant/output_format.h"

#include "model/gptq_reader.h"

const char *const sq_output_format_names[] = {"gptq", "dense", "compressed-tensors", NULL};

sq_status sq_output_format_check(sq_output_format format, const sq_quant_options *opt, const char *where,
                                 const char *linear, int out, int in)
{
    if (format == SQ_OUTPUT_GPTQ && sq_gptq_check_shape(linear, out, in, opt->bits) != SQ_OK)
        return sq_fail(SQ_ERR_SPEC,
                       "%s: %s is [%d out, %d in] and the GPTQ v1 format packs both along 32-bit words (multiples "
                       "of 32 only): set \"output\": {\"format\": \"dense\"} or \"compressed-tensors\"",
                       where, linear, out, in);
    for (int c = 0; opt->avg_bits > 0 && format == SQ_OUTPUT_COMPRESSED_TENSORS && c < opt->n_candidates; c++)
        if (opt->candidate_bits[c] != 4 && opt->candidate_bits[c] != 8)
            return sq_fail(SQ_ERR_SPEC,
                           "%s.candidate_bits: %d; compressed-tensors pack-quantized output (for %s) is written for 4 "
                           "and 8 bits: set \"candidate_bits\": [4, 8], or \"output\": {\"format\": \"gptq\"} "
                           "or \"dense\"",
                           where, opt->candidate_bits[c], linear);
    if (format == SQ_OUTPUT_COMPRESSED_TENSORS && opt->avg_bits <= 0 && opt->bits != 4 && opt->bits != 8)
        return sq_fail(SQ_ERR_SPEC,
                       "%s.bits: %d; compressed-tensors pack-quantized output (for %s) is written for 4 and 8 bits: "
                       "set \"output\": {\"format\": \"dense\"} or \"gptq\"",
                       where, opt->bits, linear);
    if (format == SQ_OUTPUT_COMPRESSED_TENSORS && opt->desc_act && !opt->static_groups && opt->group_size > 0 &&
        opt->group_size < in)
        return sq_fail(SQ_ERR_SPEC,
                       "%s.desc_act: act-order groups of %s are not contiguous (g_idx), which compressed-tensors "
                       "no longer reads (actorder \"group\" was removed): set static_groups, or \"output\": "
                       "{\"format\": \"gptq\"} or \"dense\"",
                       where, linear);
    return SQ_OK;
}
