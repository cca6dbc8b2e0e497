/* signals.c: async-signal-safe stop flag set by SIGTERM / SIGUSR1 / SIGINT. */
#include "worker/signals.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int signo) { stop_signal = signo; }

void sq_signals_install(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGUSR1, &action, NULL);
    sigaction(SIGINT, &action, NULL);
}

bool sq_stop_requested(void) { return stop_signal != 0; }

const char *sq_stop_signal_name(void)
{
    switch (stop_signal) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGINT: return "SIGINT";
    default: return NULL;
    }
}
