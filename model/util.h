/* Always-on invariant checks, shared by every module. A broken invariant is a bug: print the
 * condition and where, then abort. User and environment errors never come here (see RxError). */
#ifndef ROPEX_UTIL_H
#define ROPEX_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#define ASSERT(cond)                                                                    \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "ropex: internal error: assertion `%s` failed at %s:%d\n", \
                    #cond, __FILE__, __LINE__);                                         \
            abort();                                                                    \
        }                                                                               \
    } while (0)

#endif
