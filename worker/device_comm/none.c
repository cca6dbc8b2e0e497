/* none.c: the device communicator of CPU builds: there is none, and comm.c moves
 * "device" tensors (host memory here) over MPI itself. */
#include "worker/device_comm.h"

sq_status sq_device_comm_init(int rank, int world_size)
{
    (void)rank;
    (void)world_size;
    return SQ_OK;
}

void sq_device_comm_finalize(void) {}

bool sq_device_comm_ready(void) { return false; }

static sq_status unavailable(void) { return sq_fail(SQ_ERR_UNSUPPORTED, "no device communicator in a CPU build"); }

sq_status sq_device_allreduce_sum_i64(void *dev, size_t count)
{
    (void)dev, (void)count;
    return unavailable();
}

sq_status sq_device_bcast(void *dev, size_t bytes, int root)
{
    (void)dev, (void)bytes, (void)root;
    return unavailable();
}

sq_status sq_device_send(const void *dev, size_t bytes, int dest)
{
    (void)dev, (void)bytes, (void)dest;
    return unavailable();
}

sq_status sq_device_recv(void *dev, size_t bytes, int source)
{
    (void)dev, (void)bytes, (void)source;
    return unavailable();
}
