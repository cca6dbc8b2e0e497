/* comm.h: the one communication interface every rank uses.
 *
 * Control messages and host buffers go over MPI. Device tensors (buffers from
 * kn_alloc) go over NCCL on the CUDA backend (worker/device_comm.h: GPU =
 * node-local rank, NCCL id broadcast over MPI), and over MPI on the CPU
 * backend, where device memory is host memory.
 * Every call checks MPI's return code and turns a failure into SQ_ERR_COMM. */
#ifndef SQ_WORKER_COMM_H
#define SQ_WORKER_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    int rank;
    int world_size;
    int local_rank; /* rank among the processes of this node: selects the GPU */
} sq_comm;

/* MPI_Init (thread level FUNNELED) and rank discovery. */
sq_status sq_comm_init(sq_comm *comm, int *argc, char ***argv);
void sq_comm_finalize(void);
/* End every rank of the job now with `code` (after a fatal error on one rank). */
void sq_comm_abort(int code);

sq_status sq_comm_barrier(void);
/* Sum device int64 across ranks, in place: exact, so the result does not depend on
 * the order the ranks are added in (floating-point sums would; see kernels/fixed_sum.h). */
sq_status sq_comm_allreduce_sum_i64(int64_t *dev, size_t count);
/* Element-wise maximum of host floats across ranks, in place (a max is exact in any order:
 * SmoothQuant's activation ranges). */
sq_status sq_comm_allreduce_max_f32_host(float *host, size_t count);
/* Broadcast `bytes` of a device / host buffer from `root`. */
sq_status sq_comm_bcast_device(void *dev, size_t bytes, int root);
sq_status sq_comm_bcast_host(void *host, size_t bytes, int root);
/* Point-to-point device transfers (pipeline activations). */
sq_status sq_comm_send_device(const void *dev, size_t bytes, int dest, int tag);
sq_status sq_comm_recv_device(void *dev, size_t bytes, int source, int tag);
/* Point-to-point host transfers (quantization results to the coordinator). */
sq_status sq_comm_send_host(const void *host, size_t bytes, int dest, int tag);
sq_status sq_comm_recv_host(void *host, size_t bytes, int source, int tag);
/* Agree on a status: every rank learns the worst (largest) status of all ranks,
 * so that one rank's failure stops all of them at the same point. */
sq_status sq_comm_agree(sq_status local, sq_status *worst);
/* sq_comm_agree for a check every rank makes on its own (a spec check, a device start): `local`
 * where it failed, a failure naming another rank where only another rank's did, SQ_OK if none did. */
sq_status sq_comm_all_ok(sq_status local);
/* Whether an agreement has carried a failure (not a stop request) to every rank: then no rank
 * waits in a collective, the job can end with MPI_Finalize instead of MPI_Abort, and only
 * `reporter` (the lowest rank whose own status was that failure) needs to print its message. */
bool sq_comm_failure_agreed(int *reporter);
/* Wall seconds this rank has spent in the calls above (MPI_Init aside), waiting for the
 * other ranks included and the device work queued before each call excluded: the
 * communication share of a phase, for the logs and bench/bench_scaling.sh. */
double sq_comm_seconds(void);

#endif
