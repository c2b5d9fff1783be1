#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "common/backoff.h"

void backoff_started(backoff *b, int64_t now) { b->started_at = now; }

int64_t backoff_next(backoff *b, int64_t now) {
    if (now - b->started_at >= b->healthy_ms)
        b->delay_ms = 0;
    b->delay_ms = b->delay_ms ? b->delay_ms * 2 : b->first_ms;
    if (b->delay_ms > b->max_ms)
        b->delay_ms = b->max_ms;
    return b->delay_ms;
}
