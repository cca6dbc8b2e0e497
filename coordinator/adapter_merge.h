/* adapter_merge.h: the merged model of a qlora step (`merge: true`), written
 * under the adapter directory as merged/: every linear is the base as training
 * saw it (an NF4 base dequantized) plus (alpha/r)·B·A where an adapter sits, as
 * a dense Hugging Face checkpoint in the source's dtype with every other tensor
 * copied (assemble_dense.h). The adapter's manifest is then rewritten to list
 * the merged files too, so that a push carries them. A GPTQ base is refused:
 * its source has no dense linear to replace. */
#ifndef SQ_COORDINATOR_ADAPTER_MERGE_H
#define SQ_COORDINATOR_ADAPTER_MERGE_H

#include "core/status.h"
#include "model/checkpoint.h"
#include "model/config.h"

sq_status sq_adapter_merge_write(const char *adapter_dir, const sq_model_config *cfg, const sq_checkpoint *ckpt);

#endif
