/* Socket addresses as text; see hostport.h. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "common/hostport.h"
#include "common/quote.h"
#include "common/units.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool hostport_split(const char *arg, char *host, size_t size, const char **port, bool *bracketed) {
    const char *host_start = arg, *host_end;
    *bracketed = arg[0] == '[';
    if (*bracketed) {
        host_start = arg + 1;
        host_end = strchr(arg, ']');
        if (host_end == NULL || host_end[1] != ':')
            return false;
        *port = host_end + 2;
    } else {
        host_end = strrchr(arg, ':');
        if (host_end == NULL || strchr(arg, ':') != host_end)
            return false;
        *port = host_end + 1;
    }
    size_t len = (size_t)(host_end - host_start);
    if (len >= size)
        return false;
    memcpy(host, host_start, len);
    host[len] = '\0';
    return true;
}

bool hostport_parse_port(const char *s, uint16_t *port) {
    const char *p = s;
    uint64_t v;
    bool overflow;
    if (!units_read_digits(&p, &v, &overflow) || *p != '\0' || overflow || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

bool hostport_parse_ip(const char *s, int family, uint16_t port, struct sockaddr_storage *addr,
                       socklen_t *addrlen) {
    struct in_addr ip4;
    struct in6_addr ip6;
    if ((family == AF_INET || family == AF_UNSPEC) && inet_pton(AF_INET, s, &ip4) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)addr;
        memset(addr, 0, sizeof *addr);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        sin->sin_addr = ip4;
        *addrlen = sizeof *sin;
        return true;
    }
    if ((family == AF_INET6 || family == AF_UNSPEC) && inet_pton(AF_INET6, s, &ip6) == 1) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr;
        memset(addr, 0, sizeof *addr);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        sin6->sin6_addr = ip6;
        *addrlen = sizeof *sin6;
        return true;
    }
    return false;
}

/* Formats err unless the caller passed no room for it. */
__attribute__((format(printf, 3, 4))) static void set_error(char *err, size_t errlen,
                                                            const char *fmt, ...) {
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int hostport_parse_numeric(const char *arg, struct sockaddr_storage *addr, socklen_t *addrlen,
                           char *err, size_t errlen) {
    char shown[QUOTE_SIZE];
    quote_for_message(shown, sizeof shown, arg, strlen(arg));
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_text;
    bool bracketed;
    if (!hostport_split(arg, host, sizeof host, &port_text, &bracketed) || *port_text == '\0') {
        bool ipv6 = !bracketed && strchr(arg, ':') != strrchr(arg, ':');
        set_error(err, errlen, "expected ADDR:PORT such as 127.0.0.1:7007 or [::1]:7007, got %s%s",
                  shown, ipv6 ? " (IPv6 addresses go in brackets)" : "");
        return -1;
    }
    struct sockaddr_storage parsed;
    socklen_t parsed_len;
    if (!hostport_parse_ip(host, bracketed ? AF_INET6 : AF_INET, 0, &parsed, &parsed_len)) {
        char shown_host[QUOTE_SIZE];
        quote_for_message(shown_host, sizeof shown_host, host, strlen(host));
        set_error(err, errlen, "expected an %s address in %s, got %s", bracketed ? "IPv6" : "IPv4",
                  shown, shown_host);
        return -1;
    }
    uint16_t port;
    if (!hostport_parse_port(port_text, &port)) {
        char shown_port[QUOTE_SIZE];
        quote_for_message(shown_port, sizeof shown_port, port_text, strlen(port_text));
        set_error(err, errlen, "expected a port from 0 to 65535 in %s, got %s", shown, shown_port);
        return -1;
    }
    hostport_set_port(&parsed, port);
    *addr = parsed;
    *addrlen = parsed_len;
    return 0;
}

int hostport_resolve(const char *host, const char *port, struct sockaddr_storage *addr,
                     socklen_t *addrlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int r = getaddrinfo(host, port, &hints, &ai);
    if (r != 0)
        return r;
    memcpy(addr, ai->ai_addr, ai->ai_addrlen);
    *addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

unsigned hostport_port(const struct sockaddr_storage *addr) {
    if (addr->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)addr)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
}

void hostport_set_port(struct sockaddr_storage *addr, uint16_t port) {
    if (addr->ss_family == AF_INET)
        ((struct sockaddr_in *)addr)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)addr)->sin6_port = htons(port);
}

void hostport_format_ip(const struct sockaddr_storage *addr, char *buf, size_t size) {
    if (addr->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, buf, (socklen_t)size);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, buf, (socklen_t)size);
}

void hostport_format(const struct sockaddr_storage *addr, char *buf, size_t size) {
    char ip[INET6_ADDRSTRLEN];
    hostport_format_ip(addr, ip, sizeof ip);
    snprintf(buf, size, addr->ss_family == AF_INET ? "%s:%u" : "[%s]:%u", ip, hostport_port(addr));
}
