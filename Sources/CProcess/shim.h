// What Glibc's Swift module does not expose to the process supervisor.
#include <features.h>
#include <signal.h>
#include <sys/prctl.h>

/// The signal this process gets when its parent dies (prctl PR_SET_PDEATHSIG).
static inline int frost_set_parent_death_signal(int signal_number) {
    return prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0);
}
