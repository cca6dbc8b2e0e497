/* merge.h: the merged model of a qlora step (`merge: true`): every linear is
 * the base as training saw it (the NF4 base dequantized) plus s·B·A where an
 * adapter sits, written as a dense Hugging Face checkpoint in the source's
 * dtype with every other tensor copied (coordinator/assemble_dense.h). A GPTQ
 * base is refused: its source has no dense linear to replace. */
#ifndef SQ_LORA_MERGE_H
#define SQ_LORA_MERGE_H

#include "core/status.h"
#include "lora/adapter.h"
#include "lora/base.h"

sq_status sq_lora_merge(sq_lora_base *b, const sq_lora_adapter *a, const sq_checkpoint *ckpt, const char *out_dir);

#endif
