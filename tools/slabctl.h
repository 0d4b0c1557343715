/* slabctl.h - slabctl, the operator's tool for slabd: a pure client of the JSON protocol
 * on the daemon's Unix socket (daemon/PROTOCOL.md).  Every JSON byte goes through jansson.
 *
 *   slabctl.c   main: global options, the command table, --help texts, option parsing
 *   rpc.c       the connection: connect, hello (role "monitor"), one request -> one reply
 *   table.c     aligned text tables, human units, sorting caches
 *   commands.c  list, stats, create, destroy, shrink, validate, tune, info, clients
 *   top.c       the live view (ANSI escapes + termios, no ncurses)
 *   metrics.c   Prometheus text exposition format
 *
 * Exit status: 0 success, 1 the daemon answered with an error (or validate found
 * problems), 2 usage error, 3 the daemon cannot be reached.
 */
#ifndef SLABCTL_H
#define SLABCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum {
	EXIT_DAEMON      = 1,
	EXIT_USAGE       = 2,
	EXIT_UNREACHABLE = 3,
};

/* ---- rpc.c ---------------------------------------------------------------------------- */

struct ctl {
	const char *sock_arg;   /* -s, or NULL */
	char        path[108];  /* resolved socket path */
	bool        json;       /* --json: print the daemon's reply lines untouched */
	int         fd;         /* -1 until connected */
	long long   next_id;
	char       *buf;        /* receive buffer: bytes after the last reply line */
	size_t      len, cap;
	char        err[600];   /* last error, "message (ENAME)" */
	char        server[64]; /* hello's "server" */
	int         server_pid;
};

void ctl_init(struct ctl *c);
void ctl_close(struct ctl *c);
/* Connect and say hello as a monitor.  0, or EXIT_UNREACHABLE / EXIT_DAEMON with c->err. */
int ctl_connect(struct ctl *c);
/* Send req (consumed; an "id" is added) and wait for its reply.  0 with *reply (ok:true)
 * and, if line is not NULL, *line (the exact bytes of the reply, malloc'd, no newline);
 * EXIT_DAEMON (ok:false: c->err holds "message (ERROR)", *reply and *line are still set
 * when asked for) or EXIT_UNREACHABLE (c->err set, nothing returned). */
int ctl_call(struct ctl *c, json_t *req, json_t **reply, char **line);
/* The usual shape of a command's request: connect if needed, call, print the reply line
 * on stdout under --json, print c->err on stderr on failure.  0 with *reply, or the exit
 * status. */
int ctl_request(struct ctl *c, json_t *req, json_t **reply);
/* Print "slabctl: <c->err>" on stderr and return rc. */
int ctl_fail(struct ctl *c, int rc);
/* "message (ENAME)" for a local errno value. */
void ctl_set_errno(struct ctl *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- table.c -------------------------------------------------------------------------- */

struct table;

/* cols: one header per column; align: one 'l' or 'r' per column. */
struct table *table_new(int ncols, const char *const *headers, const char *align);
void table_free(struct table *t);
/* Add a cell to the current row (a new row starts after the last column is filled). */
void table_cell(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An integer field of o, or "-" when o lacks it. */
void table_cell_int(struct table *t, json_t *o, const char *key);
/* Write the table (header first unless no_header), two spaces between columns. */
void table_print(struct table *t, FILE *out, bool no_header);
size_t table_rows(const struct table *t);

/* 1536 -> "1.5K"; 512 -> "512B"; binary units (K, M, G, T). */
const char *fmt_bytes(uint64_t bytes, char *buf, size_t len);
/* Rates and big counts: 12345 -> "12.3k", 1234567 -> "1.2M" (decimal units). */
const char *fmt_count(double v, char *buf, size_t len);

/* Integer field or 0. */
long long jint(json_t *o, const char *key);
/* Integer field of o["counters"] or 0. */
long long jcounter(json_t *o, const char *key);
const char *jstr(json_t *o, const char *key);
/* Fast-path hit rate in percent, or -1 when there was no traffic. */
double hit_rate(json_t *cache);

enum sort_key { SORT_NAME, SORT_SIZE, SORT_MEMORY, SORT_USE, SORT_RATE };
/* "name", "size", "memory", "use" (and "rate" if allow_rate): 0 or -1. */
int sort_key_parse(const char *s, bool allow_rate, enum sort_key *out);
const char *sort_key_name(enum sort_key k);
/* Sort an array of caches in place (a stable order: ties by name).  rate_of (may be NULL)
 * gives SORT_RATE's value for a cache. */
void sort_caches(json_t *caches, enum sort_key k, double (*rate_of)(json_t *cache, void *arg),
		 void *arg);

/* ---- slabctl.c: per-command option parsing -------------------------------------------- */

struct opt {
	const char *name;   /* long name without "--" */
	char        short_name;
	bool        has_arg;
	int         id;
};

/* Parse argv[1..] of a command (argv[0] is the command's name).  Options of the command
 * and the global ones (-s/--socket, --json, -h/--help) are accepted anywhere before "--".
 * Calls on_opt for each of the command's options (value NULL for flags) and collects the
 * rest as positional arguments (pos, npos).  Returns 0, -1 after printing a usage error,
 * or 1 when --help was asked for (the help was printed). */
struct cmd;
int parse_opts(struct ctl *c, const struct cmd *cmd, int argc, char **argv,
	       const struct opt *opts, int (*on_opt)(int id, const char *val, void *arg),
	       void *arg, char ***pos, int *npos);
/* "slabctl COMMAND: message" and a pointer to --help; returns EXIT_USAGE. */
int usage_error(const struct cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parse an unsigned number with an optional K/M/G (binary) suffix; 0 or -1. */
int parse_u64(const char *s, bool suffixes, uint64_t *out);

struct cmd {
	const char *name;
	int (*run)(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
	const char *synopsis;
	const char *help;
};

/* ---- the commands ----------------------------------------------------------------------- */

int cmd_list(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_stats(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_create(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_destroy(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_shrink(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_reclaim(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_validate(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_tune(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_info(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_clients(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_top(struct ctl *c, const struct cmd *cmd, int argc, char **argv);
int cmd_metrics(struct ctl *c, const struct cmd *cmd, int argc, char **argv);

#endif
