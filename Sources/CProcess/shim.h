// CProcess: what Glibc's Swift module does not expose to the supervisor: prctl, memfd_create, atomics on shared memory, CPU affinity.
// What Glibc's Swift module does not expose to the process supervisor.
#include <features.h>
#include <signal.h>
#include <sys/prctl.h>

/// The signal this process gets when its parent dies (prctl PR_SET_PDEATHSIG).
static inline int frost_set_parent_death_signal(int signal_number) {
    return prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0);
}

#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/// An anonymous file for memory shared with workers (memfd_create, close-on-exec; the
/// master dup2s it into each worker). -1 with errno on failure.
static inline int frost_memfd_create(const char *name) {
    return (int)syscall(SYS_memfd_create, name, 1u /* MFD_CLOEXEC */);
}

/// Relaxed atomic access to a 32-bit value in memory shared between processes.
static inline int32_t frost_shared_load(const int32_t *value) { return __atomic_load_n(value, __ATOMIC_RELAXED); }
static inline void frost_shared_store(int32_t *value, int32_t new_value) { __atomic_store_n(value, new_value, __ATOMIC_RELAXED); }

/// The calling thread's CPU affinity as a bit mask of `bytes` bytes (sched_getaffinity
/// through syscall: the glibc wrappers need _GNU_SOURCE). 0, or -1 with errno.
static inline int frost_get_affinity(unsigned char *mask, unsigned long bytes) {
    long copied = syscall(SYS_sched_getaffinity, 0, bytes, mask);
    return copied < 0 ? -1 : 0;
}

/// Binds the calling thread (and the threads it starts later) to the CPUs in `mask`.
static inline int frost_set_affinity(const unsigned char *mask, unsigned long bytes) {
    return (int)syscall(SYS_sched_setaffinity, 0, bytes, mask);
}
