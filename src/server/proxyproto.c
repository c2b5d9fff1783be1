#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

static const unsigned char v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                               0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_prefix[] = "PROXY ";

enum {
    V2_HEADER = 16,
    V2_CMD_LOCAL = 0x0,
    V2_CMD_PROXY = 0x1,
    V2_FAM_UNSPEC = 0x0,
    V2_FAM_INET = 0x1,
    V2_FAM_INET6 = 0x2,
    V2_FAM_UNIX = 0x3,
    V2_PROTO_UNSPEC = 0x0,
    V2_PROTO_STREAM = 0x1,
    V2_INET_LEN = 12,  /* two IPv4 addresses and two ports */
    V2_INET6_LEN = 36, /* two IPv6 addresses and two ports */
    V1_FIELD = 46      /* the longest address text, with its NUL */
};

static proxyproto_status fail(proxyproto_result *out, const char *why) {
    out->error = why;
    return PROXYPROTO_ERROR;
}

static proxyproto_status done_local(proxyproto_result *out, size_t length) {
    out->length = length;
    out->local = true;
    return PROXYPROTO_DONE;
}

/* Whether the len bytes at buf could begin prefix (of plen bytes). */
static bool begins(const unsigned char *buf, size_t len, const void *prefix, size_t plen) {
    return memcmp(buf, prefix, len < plen ? len : plen) == 0;
}

/* ---- version 1: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n" ------------------ */

/* The next space-separated field of the line [*p, end) into field; false
 * if it is empty or longer than size - 1. */
static bool next_field(const char **p, const char *end, char *field, size_t size) {
    const char *start = *p;
    while (*p < end && **p != ' ')
        (*p)++;
    size_t n = (size_t)(*p - start);
    if (n == 0 || n >= size)
        return false;
    memcpy(field, start, n);
    field[n] = '\0';
    if (*p < end)
        (*p)++; /* the space */
    return true;
}

/* A decimal port, 0-65535, without a sign or leading zeros. */
static bool parse_port(const char *s, uint16_t *port) {
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* An address and port of family into ss; false if either is bad. */
static bool v1_address(int family, const char *ip, const char *port, struct sockaddr_storage *ss,
                       socklen_t *len) {
    uint16_t p;
    if (!parse_port(port, &p))
        return false;
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(p);
        *len = sizeof *s4;
        return inet_pton(AF_INET, ip, &s4->sin_addr) == 1;
    }
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(p);
    *len = sizeof *s6;
    return inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1;
}

/* The line between "PROXY " and CRLF: [p, end). */
static proxyproto_status v1_line(const char *p, const char *end, size_t length,
                                 proxyproto_result *out) {
    char proto[8], src[V1_FIELD], dst[V1_FIELD], sport[8], dport[8];
    if (!next_field(&p, end, proto, sizeof proto))
        return fail(out, "v1: no protocol");
    if (strcmp(proto, "UNKNOWN") == 0)
        return done_local(out, length); /* the rest of the line is ignored */
    int family = strcmp(proto, "TCP4") == 0 ? AF_INET : strcmp(proto, "TCP6") == 0 ? AF_INET6 : 0;
    if (!family)
        return fail(out, "v1: unknown protocol");
    if (!next_field(&p, end, src, sizeof src) || !next_field(&p, end, dst, sizeof dst) ||
        !next_field(&p, end, sport, sizeof sport) || !next_field(&p, end, dport, sizeof dport) ||
        p != end || end[-1] == ' ')
        return fail(out, "v1: malformed line");
    if (!v1_address(family, src, sport, &out->src, &out->srclen) ||
        !v1_address(family, dst, dport, &out->dst, &out->dstlen))
        return fail(out, "v1: bad address or port");
    out->length = length;
    out->local = false;
    return PROXYPROTO_DONE;
}

static proxyproto_status parse_v1(const unsigned char *buf, size_t len, proxyproto_result *out) {
    size_t plen = sizeof v1_prefix - 1;
    if (!begins(buf, len, v1_prefix, plen))
        return fail(out, "no PROXY header");
    size_t limit = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
    for (size_t i = plen; i < limit; i++) {
        if (buf[i] == '\r') {
            if (i + 1 == limit)
                break; /* the LF may follow */
            if (buf[i + 1] != '\n')
                return fail(out, "v1: CR without LF");
            return v1_line((const char *)buf + plen, (const char *)buf + i, i + 2, out);
        }
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            return fail(out, "v1: not printable");
    }
    return len >= PROXYPROTO_V1_MAX ? fail(out, "v1: line too long") : PROXYPROTO_MORE;
}

/* ---- version 2: binary ------------------------------------------------------ */

static void v2_inet(const unsigned char *a, proxyproto_result *out) {
    struct sockaddr_in *src = (struct sockaddr_in *)&out->src;
    struct sockaddr_in *dst = (struct sockaddr_in *)&out->dst;
    memset(&out->src, 0, sizeof out->src);
    memset(&out->dst, 0, sizeof out->dst);
    src->sin_family = dst->sin_family = AF_INET;
    memcpy(&src->sin_addr, a, 4);
    memcpy(&dst->sin_addr, a + 4, 4);
    memcpy(&src->sin_port, a + 8, 2); /* both in network order */
    memcpy(&dst->sin_port, a + 10, 2);
    out->srclen = out->dstlen = sizeof *src;
}

static void v2_inet6(const unsigned char *a, proxyproto_result *out) {
    struct sockaddr_in6 *src = (struct sockaddr_in6 *)&out->src;
    struct sockaddr_in6 *dst = (struct sockaddr_in6 *)&out->dst;
    memset(&out->src, 0, sizeof out->src);
    memset(&out->dst, 0, sizeof out->dst);
    src->sin6_family = dst->sin6_family = AF_INET6;
    memcpy(&src->sin6_addr, a, 16);
    memcpy(&dst->sin6_addr, a + 16, 16);
    memcpy(&src->sin6_port, a + 32, 2);
    memcpy(&dst->sin6_port, a + 34, 2);
    out->srclen = out->dstlen = sizeof *src;
}

/* A whole v2 header of total bytes: its command and addresses. */
static proxyproto_status v2_body(const unsigned char *buf, size_t total, proxyproto_result *out) {
    unsigned command = buf[12] & 0x0F, family = buf[13] >> 4, proto = buf[13] & 0x0F;
    size_t body = total - V2_HEADER;
    if (command == V2_CMD_LOCAL)
        return done_local(out, total); /* a health check: the addresses mean nothing */
    if (command != V2_CMD_PROXY)
        return fail(out, "v2: unknown command");
    if (family == V2_FAM_UNSPEC || family == V2_FAM_UNIX)
        return done_local(out, total); /* no address of ours to use: the socket's */
    if (proto != V2_PROTO_STREAM && proto != V2_PROTO_UNSPEC)
        return fail(out, "v2: not a stream");
    if (family == V2_FAM_INET && body >= V2_INET_LEN)
        v2_inet(buf + V2_HEADER, out);
    else if (family == V2_FAM_INET6 && body >= V2_INET6_LEN)
        v2_inet6(buf + V2_HEADER, out);
    else
        return fail(out, family > V2_FAM_UNIX ? "v2: unknown family" : "v2: addresses too short");
    out->length = total; /* TLVs, if any, skipped */
    out->local = false;
    return PROXYPROTO_DONE;
}

static proxyproto_status parse_v2(const unsigned char *buf, size_t len, proxyproto_result *out) {
    if (!begins(buf, len, v2_signature, sizeof v2_signature))
        return fail(out, "no PROXY header");
    if (len > 12 && (buf[12] >> 4) != 2)
        return fail(out, "v2: unknown version");
    if (len < V2_HEADER)
        return PROXYPROTO_MORE;
    size_t total = V2_HEADER + ((size_t)buf[14] << 8 | buf[15]);
    if (total > PROXYPROTO_MAX_HEADER)
        return fail(out, "v2: header too long");
    if (len < total)
        return PROXYPROTO_MORE;
    return v2_body(buf, total, out);
}

proxyproto_status proxyproto_parse(const void *buf, size_t len, proxyproto_result *out) {
    const unsigned char *b = buf;
    out->error = NULL;
    if (len == 0)
        return PROXYPROTO_MORE;
    return b[0] == v2_signature[0] ? parse_v2(b, len, out) : parse_v1(b, len, out);
}
