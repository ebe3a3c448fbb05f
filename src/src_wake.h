/* src_wake: ending source threads that are blocked in a read at shutdown. A thread blocked
 * in read() on a device, a FIFO or a socket does not see the stop flag: it is sent
 * SRC_WAKE_SIGNAL, whose handler only notes it and is installed without SA_RESTART, so that
 * the read fails with EINTR; a driver that would retry on EINTR asks src_stopping() first
 * (src_driver.h). The signal is repeated until the thread ends, because one sent between
 * the thread's last look at the stop flag and its read() would be lost. */
#ifndef ENTROPYD_SRC_WAKE_H
#define ENTROPYD_SRC_WAKE_H

#include <pthread.h>

/* Install the wake-up handler (only at shutdown: earlier, the signal keeps its default). */
void src_wake_install(void);
/* Wake thread t until it ends or deadline_ms (clock_ms) passes; 0 once joined, else -1. */
int src_wake_join(pthread_t t, long long deadline_ms);

#endif
