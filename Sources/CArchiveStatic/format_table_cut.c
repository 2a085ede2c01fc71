// CArchiveStatic: one C symbol that keeps libarchive's table of writer formats (and libxml2 with it) out of the link.
/*
 * Why this file exists: libarchive's zip writer calls one helper,
 * __archive_write_entry_filetype_unsupported, that lives in archive_write_set_format.o
 * next to the table of every writer format. Linking libarchive statically would then
 * pull in every writer (xar needs libxml2, which needs ICU: about 30 MB in each bundle).
 * Defining the helper here keeps that object out of the link. It reports the same
 * error libarchive does; FrostArchive only ever writes regular files, so it does not
 * expect to reach it.
 */
#include <archive.h>
#include <archive_entry.h>
#include "frost_archive_static.h"
#include <errno.h>
/* libarchive's ARCHIVE_ERRNO_FILE_FORMAT is EFTYPE where it exists, else EINVAL. */
#define EFTYPE_FROST EINVAL

void __archive_write_entry_filetype_unsupported(struct archive *a, struct archive_entry *entry,
                                                const char *format) {
    archive_set_error(a, EFTYPE_FROST, "%s: %s format cannot archive files with mode 0%lo",
                      archive_entry_pathname(entry), format, (unsigned long)archive_entry_mode(entry));
}

int frost_archive_static_linked(void) { return 1; }
