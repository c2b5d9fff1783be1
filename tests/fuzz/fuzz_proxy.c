/* libFuzzer target for the PROXY protocol header parser
 * (src/server/proxyproto.c): network bytes, so any input must parse
 * without a crash, an out-of-bounds read or undefined behaviour.
 *
 * Checked on every input, besides what ASan and UBSan catch:
 *   - ERROR comes with a reason; DONE with a length within the input and
 *     the limits (107 bytes for v1, PROXYPROTO_MAX_HEADER for v2), and
 *     with IPv4 or IPv6 addresses of the right size unless local;
 *   - the parser reads no byte past the header: the header alone, and the
 *     header with other bytes behind it, give the same result;
 *   - every prefix of a whole header asks for more or is already an error
 *     (bytes are never taken back), never DONE early.
 *
 * Built by tests/fuzz/build-and-run. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "server/proxyproto.h"

static void check_done(const proxyproto_result *r, size_t size) {
    if (r->length == 0 || r->length > size || r->length > PROXYPROTO_MAX_HEADER)
        abort();
    if (r->local)
        return;
    int fam = r->src.ss_family;
    if (fam != r->dst.ss_family || (fam != AF_INET && fam != AF_INET6))
        abort();
    socklen_t want = fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (r->srclen != want || r->dstlen != want)
        abort();
}

/* The header alone gives what it gave with the rest behind it, and each
 * of its proper prefixes asks for more. */
static void check_exact(const uint8_t *data, const proxyproto_result *whole) {
    proxyproto_result r;
    if (proxyproto_parse(data, whole->length, &r) != PROXYPROTO_DONE || r.length != whole->length ||
        r.local != whole->local)
        abort();
    if (!r.local && (memcmp(&r.src, &whole->src, sizeof r.src) != 0 ||
                     memcmp(&r.dst, &whole->dst, sizeof r.dst) != 0))
        abort();
    for (size_t n = 0; n < whole->length; n++)
        if (proxyproto_parse(data, n, &r) != PROXYPROTO_MORE)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A copy of exactly size bytes on the heap: ASan sees a read past it. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    proxyproto_result r;
    switch (proxyproto_parse(buf, size, &r)) {
    case PROXYPROTO_ERROR:
        if (!r.error)
            abort();
        break;
    case PROXYPROTO_DONE:
        check_done(&r, size);
        check_exact(buf, &r);
        break;
    case PROXYPROTO_MORE:
        if (size >= PROXYPROTO_MAX_HEADER)
            abort(); /* every header ends within the limit */
        break;
    }
    free(buf);
    return 0;
}
