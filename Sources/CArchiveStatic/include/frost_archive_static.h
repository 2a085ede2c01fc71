#ifndef FROST_ARCHIVE_STATIC_H
#define FROST_ARCHIVE_STATIC_H
/* Referenced from FrostArchive so that this target's object is always linked. */
int frost_archive_static_linked(void);
#endif
