/* pareto.c: the Pareto frontier by one pass over the points sorted by x (see pareto.h).
 * Sorted by (x, y), a point is on the frontier exactly when its y is below every y seen
 * before it, or it repeats the frontier point that holds the lowest y so far. */
#include "jobs/pareto.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    double x, y;
    int index;
} pareto_point;

static int by_x_then_y(const void *a, const void *b)
{
    const pareto_point *p = a, *q = b;
    if (p->x != q->x)
        return p->x < q->x ? -1 : 1;
    if (p->y != q->y)
        return p->y < q->y ? -1 : 1;
    return (p->index > q->index) - (p->index < q->index);
}

sq_status sq_pareto_frontier(const double *x, const double *y, int n, int *frontier, int *count)
{
    *count = 0;
    if (n <= 0)
        return SQ_OK;
    pareto_point *points = malloc((size_t)n * sizeof *points);
    if (!points)
        return sq_fail(SQ_ERR_NOMEM, "pareto frontier: cannot sort %d points", n);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i]))
            points[m++] = (pareto_point){x[i], y[i], i};
    qsort(points, (size_t)m, sizeof *points, by_x_then_y);
    const pareto_point *best = NULL; /* the frontier point with the lowest y so far */
    for (int i = 0; i < m; i++) {
        const pareto_point *p = &points[i];
        if (!best || p->y < best->y || (p->y == best->y && p->x == best->x)) {
            frontier[(*count)++] = p->index;
            best = p;
        }
    }
    free(points);
    return SQ_OK;
}
