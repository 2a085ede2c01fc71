// CArchive: libarchive's headers for FrostArchive (a system library linked statically, no pkg-config).
#ifndef FROST_CARCHIVE_SHIM_H
#define FROST_CARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>

/* AE_IFREG is a cast macro that Swift does not import. */
static inline unsigned int frost_ae_ifreg(void) { return AE_IFREG; }
static inline unsigned int frost_ae_ifdir(void) { return AE_IFDIR; }
static inline unsigned int frost_ae_iflnk(void) { return AE_IFLNK; }
#endif
