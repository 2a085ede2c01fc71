// CDeflate: libdeflate's header, whose whole-buffer inflate and CRC-32 read the loader's archive entries.
// libdeflate.a is linked statically by FrostArchive.
#include <features.h>
#include <libdeflate.h>
