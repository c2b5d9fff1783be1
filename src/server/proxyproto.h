/* The PROXY protocol header (HAProxy's, versions 1 and 2) that a load
 * balancer sends first on a connection it passes on: who the client
 * really is.
 *
 * A pure parser: it owns no state, reads nothing but the bytes it is
 * given and never reads past the header, so that the caller can take
 * exactly the header off the socket and leave the payload behind it.
 * Limits: a v1 line is at most 107 bytes (CRLF included), a v2 header at
 * most PROXYPROTO_MAX_HEADER bytes (16 + its TLVs, which are skipped). */
#ifndef COECHO_PROXYPROTO_H
#define COECHO_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

enum {
    PROXYPROTO_V1_MAX = 107,     /* the spec's longest v1 line */
    PROXYPROTO_MAX_HEADER = 1024 /* of any header: v2's 16 bytes + at most 1008 */
};

typedef enum proxyproto_status {
    PROXYPROTO_MORE, /* a header's beginning: give more bytes */
    PROXYPROTO_DONE, /* a whole header: see the result */
    PROXYPROTO_ERROR /* not a header, or a bad or oversized one */
} proxyproto_status;

typedef struct proxyproto_result {
    size_t length;                    /* DONE: the header's bytes; the payload starts there */
    bool local;                       /* DONE: no client address (v1 UNKNOWN, v2 LOCAL or
                                         AF_UNSPEC/AF_UNIX): use the socket's own peer */
    struct sockaddr_storage src, dst; /* DONE and !local: the client, the server */
    socklen_t srclen, dstlen;
    const char *error; /* ERROR: why, a static string */
} proxyproto_result;

/* Parses the len bytes at buf, a connection's first. */
proxyproto_status proxyproto_parse(const void *buf, size_t len, proxyproto_result *out);

#endif
