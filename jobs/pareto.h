/* pareto.h: the Pareto frontier of points where less is better on both axes (a sweep's
 * output size and perplexity): the points no other point dominates. Point j dominates
 * point i when x[j] <= x[i] and y[j] <= y[i] with at least one strictly smaller; equal
 * points do not dominate each other, so both stay. Points with a non-finite coordinate
 * take no part. */
#ifndef SQ_JOBS_PARETO_H
#define SQ_JOBS_PARETO_H

#include "core/status.h"

/* The frontier's point indices into `frontier` (room for n), by increasing x (then y, then
 * index); *count receives how many. O(n log n). */
sq_status sq_pareto_frontier(const double *x, const double *y, int n, int *frontier, int *count);

#endif
