#ifndef MODELD_CARCHIVE_SHIM_H
#define MODELD_CARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>
#endif
