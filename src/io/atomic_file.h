/* Files written atomically: a temp file beside the target, flushed, fsynced and renamed over it,
 * then the directory fsynced; a reader sees the old file or the whole new one, never a part. */
#ifndef KILN_IO_ATOMIC_FILE_H
#define KILN_IO_ATOMIC_FILE_H

#include <stdio.h>
#include "kiln/kiln.h"

/* A file being written; write through fp between open and commit/abort. */
typedef struct {
    FILE *fp;
    char path[4096];
    char tmp[4160];
} kiln_atomic_file;

/* Creates a fresh temp file in path's directory and opens it for writing. */
kiln_status kiln_atomic_open(kiln_atomic_file *f, const char *path);
/* Flushes and fsyncs the temp file, renames it over the target and fsyncs the directory; on any
 * failure (including an earlier write error on fp) removes the temp file and leaves the target
 * as it was. */
kiln_status kiln_atomic_commit(kiln_atomic_file *f);
/* Closes and removes the temp file. */
void kiln_atomic_abort(kiln_atomic_file *f);

#endif
