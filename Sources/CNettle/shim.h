// CNettle: nettle's SHA-256 header (libnettle.a is linked with libarchive, which needs it).
// nettle's SHA-256 (libnettle.a is linked already: libarchive's zip reader needs it).
// Its compression function is chosen at run time, with the x86 SHA extensions when the
// CPU has them.
#include <features.h>
#include <nettle/sha2.h>
