/* coechod -t beyond the file: what the start would need of this host,
 * checked without side effects (nothing created, bound or changed), as
 * the user running -t:
 *   - each listen address can be bound here (a bind without listen(2));
 *     a port in use passes, as a running coechod may hold it, and so
 *     does a privileged port refused to a user other than root;
 *   - log.file and pid_file: their directories exist and pass the
 *     checks of the start;
 *   - user exists.
 *
 * Owns nothing. */
#ifndef COECHO_PREFLIGHT_H
#define COECHO_PREFLIGHT_H

#include <stdbool.h>
#include <stdio.h>

#include "server/config.h"

/* Prints each problem to out like the file's errors: "FILE:LINE:COLUMN:
 * KEY: message" for a value read from path (the file, as given; NULL if
 * none), "coechod: KEY: message" for others (cli_listen: the listeners
 * came from -l). Warnings, such as the built-in [::1] missing on a machine
 * without IPv6, are printed with "warning: " and do not count. Returns the
 * number of problems. */
int preflight_check(const config *cfg, const char *path, bool cli_listen, FILE *out);

#endif
