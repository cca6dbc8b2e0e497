/* device_comm.h: collectives on device tensors without a trip through host memory.
 *
 * Builds with the CUDA backend use NCCL (worker/device_comm/nccl.c): rank 0
 * creates the NCCL unique id, MPI broadcasts it, every rank joins with the GPU
 * kn_init selected. CPU builds link worker/device_comm/none.c, where device
 * memory is host memory and comm.c's MPI path is used directly. */
#ifndef SQ_WORKER_DEVICE_COMM_H
#define SQ_WORKER_DEVICE_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

/* Join the device communicator (after MPI and kn_init); a no-op without NCCL. */
sq_status sq_device_comm_init(int rank, int world_size);
void sq_device_comm_finalize(void);
/* True once a device communicator is up: comm.c then routes device tensors here. */
bool sq_device_comm_ready(void);

sq_status sq_device_allreduce_sum_i64(void *dev, size_t count);
sq_status sq_device_bcast(void *dev, size_t bytes, int root);
sq_status sq_device_send(const void *dev, size_t bytes, int dest);
sq_status sq_device_recv(void *dev, size_t bytes, int source);

#endif
