/* scratch_dir.h: a private temporary directory for one process of a job.
 *
 * Files on their way to or from object storage (artifacts before their PUT,
 * an output checkpoint before its upload, config and tokenizer files of an
 * s3:// model) are staged here. The directory is made with mkdtemp under
 * $TMPDIR (else /tmp) and removed, with everything in it, when the job ends. */
#ifndef SQ_CORE_SCRATCH_DIR_H
#define SQ_CORE_SCRATCH_DIR_H

#include "core/status.h"

/* A new empty directory "$TMPDIR/shardq-XXXXXX" (caller frees the path). */
sq_status sq_scratch_dir_create(char **path);

/* Remove the directory and everything under it; NULL is a no-op. */
sq_status sq_scratch_dir_remove(const char *path);

#endif
