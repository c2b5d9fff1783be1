/* What both programs' command lines share: the usage error and the
 * descriptor limit. */
#ifndef COECHO_CLI_H
#define COECHO_CLI_H

/* Prints "PROGRAM: message", a newline and the usage text to stderr, and
 * exits 2 (a usage error). */
__attribute__((format(printf, 3, 4))) _Noreturn void cli_usage_error(const char *program,
                                                                     const char *usage,
                                                                     const char *fmt, ...);

/* Raises RLIMIT_NOFILE's soft limit to the hard limit (a program serving or
 * making many connections wants them all); returns the soft limit now in
 * force (LONG_MAX for no limit), or -errno if it cannot be read. */
long cli_raise_fd_limit(void);

#endif
