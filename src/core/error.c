/* Thread-local last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include "core/error.h"

static _Thread_local char last_error[1024];

kiln_status kiln_error(kiln_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

const char *kiln_last_error(void)
{
    return last_error;
}
