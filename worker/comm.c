/* comm.c: MPI for control and host tensors; device tensors over NCCL when a
 * device communicator is up (CUDA builds, see device_comm.h), else over MPI,
 * staged through host memory unless the backend's device memory is host memory.
 * Host buffers of 1 MiB and more also go over NCCL when it is up (staged through
 * device memory). Large MPI transfers are cut into chunks below its int count limit. */
#include "worker/comm.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "core/log.h"
#include "kernels/kernels.h"
#include "worker/device_comm.h"

#define CHUNK_BYTES ((size_t)1 << 30)

/* Seconds spent in this file's calls since the start, waiting for the other ranks included:
 * each call first waits for the device work queued before it, so that work is not counted. */
static double comm_seconds;

static double comm_clock(void)
{
    kn_synchronize();
    return sq_now_seconds();
}

static sq_status timed(sq_status st, double start)
{
    comm_seconds += sq_now_seconds() - start;
    return st;
}

double sq_comm_seconds(void) { return comm_seconds; }

#define MPI_CHECK(call)                                                                     \
    do {                                                                                    \
        int mpi_rc_ = (call);                                                               \
        if (mpi_rc_ != MPI_SUCCESS) {                                                       \
            char mpi_msg_[MPI_MAX_ERROR_STRING];                                            \
            int mpi_len_ = 0;                                                               \
            MPI_Error_string(mpi_rc_, mpi_msg_, &mpi_len_);                                 \
            return sq_fail(SQ_ERR_COMM, "%s:%d: %s failed: %s", __FILE__, __LINE__, #call, mpi_msg_); \
        }                                                                                   \
    } while (0)

static int device_is_host(void) { return strcmp(kn_backend_name(), "cpu") == 0; }

sq_status sq_comm_init(sq_comm *comm, int *argc, char ***argv)
{
    int provided;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &comm->rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &comm->world_size));
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, comm->rank, MPI_INFO_NULL, &node));
    MPI_CHECK(MPI_Comm_rank(node, &comm->local_rank));
    MPI_Comm_free(&node);
    return SQ_OK;
}

void sq_comm_finalize(void)
{
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized)
        MPI_Finalize();
}

void sq_comm_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

static sq_status barrier_untimed(void)
{
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    return SQ_OK;
}

/* Run `op` over a host view of a device buffer: the buffer itself on the CPU
 * backend, a staged copy otherwise (downloaded first when `download`, uploaded after when `upload`). */
typedef sq_status (*host_op)(void *host, size_t bytes, void *arg);

static sq_status with_host_view(void *dev, size_t bytes, int download, int upload, host_op op, void *arg)
{
    if (device_is_host())
        return op(dev, bytes, arg);
    void *host = malloc(bytes ? bytes : 1);
    if (!host)
        return sq_fail(SQ_ERR_NOMEM, "comm: cannot stage %zu bytes", bytes);
    sq_status st = SQ_OK;
    if (download)
        st = kn_download(host, dev, bytes);
    if (st == SQ_OK)
        st = op(host, bytes, arg);
    if (st == SQ_OK && upload)
        st = kn_upload(dev, host, bytes);
    free(host);
    return st;
}

/* In-place sum of `bytes` of integers (arg: the MPI datatype). */
static sq_status allreduce_host(void *host, size_t bytes, void *arg)
{
    MPI_Datatype type = *(MPI_Datatype *)arg;
    int size;
    MPI_CHECK(MPI_Type_size(type, &size));
    char *values = host;
    size_t count = bytes / (size_t)size, per_chunk = CHUNK_BYTES / (size_t)size;
    for (size_t done = 0; done < count;) {
        size_t n = count - done < per_chunk ? count - done : per_chunk;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values + done * (size_t)size, (int)n, type, MPI_SUM, MPI_COMM_WORLD));
        done += n;
    }
    return SQ_OK;
}

static int world_size(void)
{
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}

static sq_status allreduce_sum_i64_untimed(int64_t *dev, size_t count)
{
    if (world_size() == 1) /* nothing to sum: skip the host staging on GPU backends */
        return SQ_OK;
    if (sq_device_comm_ready())
        return sq_device_allreduce_sum_i64(dev, count);
    MPI_Datatype type = MPI_INT64_T;
    return with_host_view(dev, count * sizeof(int64_t), 1, 1, allreduce_host, &type);
}

static sq_status allreduce_max_f32_host_untimed(float *host, size_t count)
{
    if (count > INT_MAX)
        return sq_fail(SQ_ERR_ARG, "all-reduce max: %zu values is more than one MPI call takes", count);
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, host, (int)count, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD));
    return SQ_OK;
}

static sq_status bcast_host(void *host, size_t bytes, void *arg)
{
    int root = *(int *)arg;
    char *p = host;
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < CHUNK_BYTES ? bytes - done : CHUNK_BYTES;
        MPI_CHECK(MPI_Bcast(p + done, (int)n, MPI_BYTE, root, MPI_COMM_WORLD));
        done += n;
    }
    return SQ_OK;
}

/* Host buffers of at least this size travel through device memory over the device
 * communicator when one is up: NCCL over NVLink moves a layer's quantization results
 * (hundreds of MB) many times faster than MPI's shared-memory copies between processes. */
#define DEVICE_ROUTE_BYTES ((size_t)1 << 20)

static bool via_device(size_t bytes) { return bytes >= DEVICE_ROUTE_BYTES && sq_device_comm_ready(); }

typedef sq_status (*device_op)(void *dev, size_t bytes, void *arg);

/* Run `op` over a device copy of a host buffer (uploaded first when `upload`, downloaded
 * after when `download`): with_host_view's mirror. */
static sq_status with_device_view(void *host, size_t bytes, int upload, int download, device_op op, void *arg)
{
    void *dev = NULL;
    SQ_TRY(kn_alloc(&dev, bytes));
    sq_status st = upload ? kn_upload(dev, host, bytes) : SQ_OK;
    if (st == SQ_OK)
        st = op(dev, bytes, arg);
    if (st == SQ_OK && download)
        st = kn_download(host, dev, bytes);
    kn_free(dev);
    return st;
}

static sq_status device_bcast_op(void *dev, size_t bytes, void *arg)
{
    return sq_device_bcast(dev, bytes, *(int *)arg);
}
static sq_status device_send_op(void *dev, size_t bytes, void *arg) { return sq_device_send(dev, bytes, *(int *)arg); }
static sq_status device_recv_op(void *dev, size_t bytes, void *arg) { return sq_device_recv(dev, bytes, *(int *)arg); }

static sq_status bcast_host_untimed(void *host, size_t bytes, int root)
{
    if (world_size() > 1 && via_device(bytes)) {
        int rank;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        return with_device_view(host, bytes, rank == root, rank != root, device_bcast_op, &root);
    }
    return bcast_host(host, bytes, &root);
}

static sq_status bcast_device_untimed(void *dev, size_t bytes, int root)
{
    if (world_size() == 1)
        return SQ_OK;
    if (sq_device_comm_ready())
        return sq_device_bcast(dev, bytes, root);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return with_host_view(dev, bytes, rank == root, rank != root, bcast_host, &root);
}

typedef struct {
    int peer;
    int tag;
} p2p;

static sq_status send_host(void *host, size_t bytes, void *arg)
{
    p2p *to = arg;
    char *p = host;
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < CHUNK_BYTES ? bytes - done : CHUNK_BYTES;
        MPI_CHECK(MPI_Send(p + done, (int)n, MPI_BYTE, to->peer, to->tag, MPI_COMM_WORLD));
        done += n;
    }
    return SQ_OK;
}

static sq_status recv_host(void *host, size_t bytes, void *arg)
{
    p2p *from = arg;
    char *p = host;
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < CHUNK_BYTES ? bytes - done : CHUNK_BYTES;
        MPI_CHECK(MPI_Recv(p + done, (int)n, MPI_BYTE, from->peer, from->tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        done += n;
    }
    return SQ_OK;
}

static sq_status send_device_untimed(const void *dev, size_t bytes, int dest, int tag)
{
    if (sq_device_comm_ready())
        return sq_device_send(dev, bytes, dest);
    p2p to = {dest, tag};
    return with_host_view((void *)dev, bytes, 1, 0, send_host, &to);
}

static sq_status recv_device_untimed(void *dev, size_t bytes, int source, int tag)
{
    if (sq_device_comm_ready())
        return sq_device_recv(dev, bytes, source);
    p2p from = {source, tag};
    return with_host_view(dev, bytes, 0, 1, recv_host, &from);
}

static sq_status send_host_untimed(const void *host, size_t bytes, int dest, int tag)
{
    if (via_device(bytes))
        return with_device_view((void *)host, bytes, 1, 0, device_send_op, &dest);
    p2p to = {dest, tag};
    return send_host((void *)host, bytes, &to);
}

static sq_status recv_host_untimed(void *host, size_t bytes, int source, int tag)
{
    if (via_device(bytes))
        return with_device_view(host, bytes, 0, 1, device_recv_op, &source);
    p2p from = {source, tag};
    return recv_host(host, bytes, &from);
}

/* The first failure every rank agreed on, and the lowest rank that reported it (-1: none yet). */
static int agreed_failure_reporter = -1;

static sq_status agree_untimed(sq_status local, sq_status *worst)
{
    struct {
        int status, rank;
    } mine = {(int)local, 0}, all = {0, 0};
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &mine.rank));
    /* MAXLOC: the worst status, and of the ranks that hold it the lowest */
    MPI_CHECK(MPI_Allreduce(&mine, &all, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD));
    *worst = (sq_status)all.status;
    if (all.status != SQ_OK && all.status != SQ_ERR_INTERRUPTED && agreed_failure_reporter < 0)
        agreed_failure_reporter = all.rank;
    return SQ_OK;
}

sq_status sq_comm_all_ok(sq_status local)
{
    sq_status worst;
    SQ_TRY(sq_comm_agree(local, &worst));
    if (local == SQ_OK && worst != SQ_OK)
        return sq_fail(worst, "failed on another rank (see its message)");
    return local;
}

bool sq_comm_failure_agreed(int *reporter)
{
    *reporter = agreed_failure_reporter;
    return agreed_failure_reporter >= 0;
}

/* ---- the timed entry points (comm.h) ---- */

/* Return `call`'s status, its wall time added to comm_seconds. */
#define TIMED(call)                                                                         \
    do {                                                                                    \
        double start_ = comm_clock();                                                       \
        return timed((call), start_);                                                       \
    } while (0)

sq_status sq_comm_barrier(void) { TIMED(barrier_untimed()); }

sq_status sq_comm_allreduce_sum_i64(int64_t *dev, size_t count) { TIMED(allreduce_sum_i64_untimed(dev, count)); }

sq_status sq_comm_allreduce_max_f32_host(float *host, size_t count)
{
    TIMED(allreduce_max_f32_host_untimed(host, count));
}

sq_status sq_comm_bcast_host(void *host, size_t bytes, int root) { TIMED(bcast_host_untimed(host, bytes, root)); }

sq_status sq_comm_bcast_device(void *dev, size_t bytes, int root) { TIMED(bcast_device_untimed(dev, bytes, root)); }

sq_status sq_comm_send_device(const void *dev, size_t bytes, int dest, int tag)
{
    TIMED(send_device_untimed(dev, bytes, dest, tag));
}

sq_status sq_comm_recv_device(void *dev, size_t bytes, int source, int tag)
{
    TIMED(recv_device_untimed(dev, bytes, source, tag));
}

sq_status sq_comm_send_host(const void *host, size_t bytes, int dest, int tag)
{
    TIMED(send_host_untimed(host, bytes, dest, tag));
}

sq_status sq_comm_recv_host(void *host, size_t bytes, int source, int tag)
{
    TIMED(recv_host_untimed(host, bytes, source, tag));
}

sq_status sq_comm_agree(sq_status local, sq_status *worst) { TIMED(agree_untimed(local, worst)); }
