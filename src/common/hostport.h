/* Socket addresses as people write them: "127.0.0.1:7007", "[::1]:7007".
 *
 * Two entry points, as the programs differ: coechod listens on IP literals
 * only (hostport_parse_numeric: no name lookups, ports 0-65535 in plain
 * digits), while coecho-load connects to names too (hostport_split, then
 * its own port check and hostport_resolve). */
#ifndef COECHO_HOSTPORT_H
#define COECHO_HOSTPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Room for the longest hostport_format text: "[v6 literal]:65535". */
enum { HOSTPORT_TEXT_SIZE = 64 };

/* Splits "HOST:PORT" or "[HOST]:PORT" at the colon before the port: the
 * host (without brackets) into host, *port at the text after the colon,
 * *bracketed whether arg starts with '['. False if arg has neither shape,
 * if a host outside brackets holds a ':' (an IPv6 address must go in
 * brackets), or if the host needs size bytes or more. The host and the port
 * may be empty: the caller decides. */
bool hostport_split(const char *arg, char *host, size_t size, const char **port, bool *bracketed);

/* A port in plain decimal digits from 0 to 65535 ("7007"; no sign, no
 * spaces). */
bool hostport_parse_port(const char *s, uint16_t *port);

/* An IP literal without brackets ("127.0.0.1", "::1") of family AF_INET,
 * AF_INET6 or AF_UNSPEC (either), with port, into *addr (zeroed first, so
 * that equal addresses compare equal bytewise) and *addrlen. No name
 * lookups. False (nothing written) if s is no such literal. */
bool hostport_parse_ip(const char *s, int family, uint16_t port, struct sockaddr_storage *addr,
                       socklen_t *addrlen);

/* "ADDR:PORT" with an IPv4 literal or "[ADDR]:PORT" with an IPv6 one, as
 * coechod's -l takes it. Returns 0, or -1 with a one-line reason in err
 * (when errlen > 0); *addr and *addrlen are written only on success. */
int hostport_parse_numeric(const char *arg, struct sockaddr_storage *addr, socklen_t *addrlen,
                           char *err, size_t errlen);

/* host (a name or a literal) and port (text) through getaddrinfo for a
 * stream socket: the first address it gives. Returns 0, or getaddrinfo's
 * error (for gai_strerror). May block on DNS. */
int hostport_resolve(const char *host, const char *port, struct sockaddr_storage *addr,
                     socklen_t *addrlen);

/* The port of an AF_INET or AF_INET6 address, and setting it. */
unsigned hostport_port(const struct sockaddr_storage *addr);
void hostport_set_port(struct sockaddr_storage *addr, uint16_t port);

/* The address alone, without brackets: "127.0.0.1", "::1". */
void hostport_format_ip(const struct sockaddr_storage *addr, char *buf, size_t size);
/* Address and port: "127.0.0.1:7007", "[::1]:7007". */
void hostport_format(const struct sockaddr_storage *addr, char *buf, size_t size);

#endif
