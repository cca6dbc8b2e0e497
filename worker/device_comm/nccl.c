/* nccl.c: the device communicator of CUDA builds: NCCL over the GPUs that
 * kn_init selected (one rank per GPU), its unique id broadcast over MPI.
 * Everything runs on the default stream, like the kernels, and each call
 * waits for completion so callers see finished data. */
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include "core/log.h"
#include "worker/device_comm.h"

static ncclComm_t comm;
static bool ready;

#define NCCL_CHECK(call)                                                                             \
    do {                                                                                             \
        ncclResult_t nccl_rc_ = (call);                                                              \
        if (nccl_rc_ != ncclSuccess)                                                                 \
            return sq_fail(SQ_ERR_COMM, "%s:%d: %s failed: %s", __FILE__, __LINE__, #call,           \
                           ncclGetErrorString(nccl_rc_));                                            \
    } while (0)

static sq_status wait_done(void)
{
    cudaError_t rc = cudaStreamSynchronize(0);
    if (rc != cudaSuccess)
        return sq_fail(SQ_ERR_COMM, "NCCL operation failed on the device: %s", cudaGetErrorString(rc));
    return SQ_OK;
}

sq_status sq_device_comm_init(int rank, int world_size)
{
    if (world_size < 2)
        return SQ_OK; /* nothing to talk to */
    ncclUniqueId id;
    if (rank == 0)
        NCCL_CHECK(ncclGetUniqueId(&id));
    if (MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        return sq_fail(SQ_ERR_COMM, "cannot broadcast the NCCL unique id");
    NCCL_CHECK(ncclCommInitRank(&comm, world_size, id, rank));
    ready = true;
    if (rank == 0)
        sq_log_info("device tensors over NCCL %d.%d (%d ranks)", NCCL_MAJOR, NCCL_MINOR, world_size);
    return SQ_OK;
}

void sq_device_comm_finalize(void)
{
    if (ready)
        ncclCommDestroy(comm);
    ready = false;
}

bool sq_device_comm_ready(void) { return ready; }

sq_status sq_device_allreduce_sum_i64(void *dev, size_t count)
{
    NCCL_CHECK(ncclAllReduce(dev, dev, count, ncclInt64, ncclSum, comm, 0));
    return wait_done();
}

sq_status sq_device_bcast(void *dev, size_t bytes, int root)
{
    NCCL_CHECK(ncclBroadcast(dev, dev, bytes, ncclUint8, root, comm, 0));
    return wait_done();
}

sq_status sq_device_send(const void *dev, size_t bytes, int dest)
{
    NCCL_CHECK(ncclSend(dev, bytes, ncclUint8, dest, comm, 0));
    return wait_done();
}

sq_status sq_device_recv(void *dev, size_t bytes, int source)
{
    NCCL_CHECK(ncclRecv(dev, bytes, ncclUint8, source, comm, 0));
    return wait_done();
}
