/* Atomic file replacement (see atomic_file.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include "core/error.h"
#include "io/atomic_file.h"

kiln_status kiln_atomic_open(kiln_atomic_file *f, const char *path)
{
    static atomic_uint counter;
    memset(f, 0, sizeof *f);
    if (strlen(path) >= sizeof f->path)
        return kiln_error(KILN_ERR_ARG, "%s: path: expected at most %zu bytes", path, sizeof f->path - 1);
    snprintf(f->path, sizeof f->path, "%s", path);
    for (int tries = 0; tries < 100; tries++) {
        unsigned k = atomic_fetch_add(&counter, 1);
        snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld.%u", path, (long)getpid(), k);
        int fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return kiln_error(KILN_ERR_IO, "%s: cannot create %s: %s", path, f->tmp, strerror(errno));
        if (!(f->fp = fdopen(fd, "wb"))) {
            kiln_status st = kiln_error(KILN_ERR_IO, "%s: cannot write: %s", f->tmp, strerror(errno));
            close(fd);
            unlink(f->tmp);
            return st;
        }
        return KILN_OK;
    }
    return kiln_error(KILN_ERR_IO, "%s: cannot find a free temp file name", path);
}

/* fsyncs the directory holding path so that a rename in it is durable. */
static kiln_status sync_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return kiln_error(KILN_ERR_IO, "%s: cannot open directory %s: %s", path, dir, strerror(errno));
    kiln_status st = KILN_OK;
    if (fsync(fd) != 0 && errno != EINVAL)
        st = kiln_error(KILN_ERR_IO, "%s: cannot fsync directory %s: %s", path, dir, strerror(errno));
    close(fd);
    return st;
}

kiln_status kiln_atomic_commit(kiln_atomic_file *f)
{
    bool ok = !ferror(f->fp) && fflush(f->fp) == 0 && fsync(fileno(f->fp)) == 0;
    int saved = errno;
    if (fclose(f->fp) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    f->fp = NULL;
    kiln_status st = KILN_OK;
    if (!ok)
        st = kiln_error(KILN_ERR_IO, "%s: cannot write: %s", f->tmp, strerror(saved ? saved : EIO));
    else if (rename(f->tmp, f->path) != 0)
        st = kiln_error(KILN_ERR_IO, "%s: cannot rename %s over it: %s", f->path, f->tmp, strerror(errno));
    if (st != KILN_OK) {
        unlink(f->tmp);
        return st;
    }
    return sync_dir(f->path);
}

void kiln_atomic_abort(kiln_atomic_file *f)
{
    if (f->fp)
        fclose(f->fp);
    f->fp = NULL;
    unlink(f->tmp);
}
