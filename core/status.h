/* status.h: how every shardq function reports failure.
 *
 * Library code never exits. A function that can fail returns an sq_status and,
 * on failure, leaves a human-readable message (naming the file, JSON path,
 * tensor or URI at fault) in a thread-local buffer that the caller can read
 * with sq_last_error(). `main` prints that message and ends the job. */
#ifndef SQ_STATUS_H
#define SQ_STATUS_H

typedef enum {
    SQ_OK = 0,
    SQ_ERR_ARG,         /* a caller passed an invalid argument */
    SQ_ERR_IO,          /* open/read/write/fsync/rename/mmap failed */
    SQ_ERR_FORMAT,      /* a file's contents are malformed (safetensors, config, tokenizer...) */
    SQ_ERR_SPEC,        /* the job spec is invalid */
    SQ_ERR_NOMEM,       /* allocation failed */
    SQ_ERR_NUMERIC,     /* a matrix is not positive definite, a NaN appeared, ... */
    SQ_ERR_NET,         /* network / object storage failure */
    SQ_ERR_COMM,        /* MPI/NCCL failure or a lost rank */
    SQ_ERR_DEVICE,      /* CUDA / cuBLAS / cuSOLVER failure */
    SQ_ERR_MISMATCH,    /* checksum, spec hash or shape mismatch */
    SQ_ERR_NOT_FOUND,   /* a file, object, tensor or key does not exist */
    SQ_ERR_INTERRUPTED, /* a signal asked the job to stop */
    SQ_ERR_UNSUPPORTED, /* valid input that this build cannot handle */
    SQ_STOPPED          /* not a failure: a callback asked its caller to stop early */
} sq_status;

/* Record a failure message (printf-style) and return `code`.
 * Typical use: return sq_fail(SQ_ERR_FORMAT, "%s: header length %llu exceeds file size", path, n); */
sq_status sq_fail(sq_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current message with more context ("loading layer 3: " + old message)
 * and return `code` unchanged. */
sq_status sq_fail_context(sq_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message of the last failure on this thread ("" if none). */
const char *sq_last_error(void);

/* Clear the message (used by code that handles a failure and moves on). */
void sq_clear_error(void);

/* Short name of a status code ("io error", "format error", ...). */
const char *sq_status_name(sq_status code);

/* Propagate a failure: evaluate `expr`, return its status if it is not SQ_OK. */
#define SQ_TRY(expr)                          \
    do {                                      \
        sq_status sq_try_status_ = (expr);    \
        if (sq_try_status_ != SQ_OK)          \
            return sq_try_status_;            \
    } while (0)

/* Jump to a cleanup label on failure, keeping the status in the variable `st`. */
#define SQ_TRY_GOTO(st, expr, label)          \
    do {                                      \
        (st) = (expr);                        \
        if ((st) != SQ_OK)                    \
            goto label;                       \
    } while (0)

#endif
