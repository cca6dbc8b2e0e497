/* stage.h: moving files between any URI and a local directory, for code that
 * needs local files (tokenizers, config parsers, the checkpoint writer).
 *
 * A local URI (path or file://) is used where it is: nothing is copied. An
 * s3:// object is downloaded (whole-object GET, checked as store.h says) into
 * the caller's scratch directory, under a folder named after the URI's hash,
 * so two URIs with the same file name never collide. */
#ifndef SQ_STORE_STAGE_H
#define SQ_STORE_STAGE_H

#include "core/status.h"
#include "store/store.h"

/* A local path holding the object at `uri` (caller frees). */
sq_status sq_stage_object(sq_store *store, const char *uri, const char *scratch, char **local_path);

/* A local directory holding the small files of the model directory at `uri`:
 * every top-level object except weights files (*.safetensors), which stay
 * where they are and are read by ranged GETs (model/checkpoint.h). */
sq_status sq_stage_model_files(sq_store *store, const char *uri, const char *scratch, char **local_dir);

/* Upload every file under `local_dir` to `uri` (a prefix), manifest.json
 * last, so a reader that finds the manifest finds every file it lists.
 * For a local `uri` the files are copied (atomically, each). */
sq_status sq_upload_dir(sq_store *store, const char *local_dir, const char *uri);

/* True when `uri` is an s3:// URI. */
int sq_uri_is_s3(const char *uri);

#endif
