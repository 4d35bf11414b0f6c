#ifndef MODELD_CARCHIVE_SHIM_H
#define MODELD_CARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>

/* The AE_IF* file types are macros with casts, which Swift does not import: the same values as plain constants. */
enum {
    MODELD_AE_IFMT = AE_IFMT,
    MODELD_AE_IFREG = AE_IFREG,
    MODELD_AE_IFLNK = AE_IFLNK,
    MODELD_AE_IFDIR = AE_IFDIR,
};
#endif
