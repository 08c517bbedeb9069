// See include/CSGDSignals.h. The handler does nothing but store the signal number.
#include "CSGDSignals.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t received = 0;

static void on_preemption_signal(int sig) { received = sig; }

int csgd_install_preemption_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_preemption_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR1, &sa, NULL) != 0) return -1;
    if (sigaction(SIGTERM, &sa, NULL) != 0) return -1;
    return 0;
}

int csgd_preemption_signal(void) { return (int)received; }
