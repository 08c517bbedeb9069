// Preemption signals (SIGUSR1, SIGTERM): an async-signal-safe handler that only sets a
// `volatile sig_atomic_t` flag, installed with sigaction. The training loop reads the flag
// at step boundaries (see Sources/CSGDTraining/Preemption.swift).
#ifndef CSGD_SIGNALS_H
#define CSGD_SIGNALS_H

/// Installs the handler for SIGUSR1 and SIGTERM (SA_RESTART). Returns 0, or -1 with errno set.
int csgd_install_preemption_handler(void);

/// The signal number received since the handler was installed, or 0.
int csgd_preemption_signal(void);

#endif
