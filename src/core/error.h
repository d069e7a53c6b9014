/* Internal error reporting: a thread-local message read by kiln_last_error(). */
#ifndef KILN_CORE_ERROR_H
#define KILN_CORE_ERROR_H

#include "kiln/kiln.h"

/* Records a printf-style message as this thread's last error; returns code for chaining. */
kiln_status kiln_error(kiln_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
