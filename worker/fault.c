/* fault.c: environment-driven kill points and delays for crash tests (see fault.h). */
#include "worker/fault.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool sq_fault_armed(const char *point, int layer)
{
    const char *spec = getenv("SHARDQ_FAULT");
    if (!spec)
        return false;
    char expected[96];
    snprintf(expected, sizeof expected, "%s:%d", point, layer);
    return strcmp(spec, expected) == 0;
}

void sq_fault_point(const char *point, int layer)
{
    if (!sq_fault_armed(point, layer))
        return;
    const char *action = getenv("SHARDQ_FAULT_ACTION");
    if (action && strcmp(action, "stall") == 0) {
        fprintf(stderr, "[shardq] fault injection: stalled at %s of layer %d\n", point, layer);
        fflush(stderr);
        for (;;)
            pause();
    }
    fprintf(stderr, "[shardq] fault injection: SIGKILL at %s of layer %d\n", point, layer);
    raise(SIGKILL);
}

void sq_fault_layer_delay(void)
{
    const char *ms = getenv("SHARDQ_LAYER_DELAY_MS");
    if (!ms)
        return;
    long n = strtol(ms, NULL, 10);
    if (n <= 0)
        return;
    struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}
