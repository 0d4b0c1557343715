/* rpc.c - slabctl's connection to slabd: one Unix stream socket, newline-delimited JSON.
 *
 * slabctl says hello with role "monitor": it never receives the arena fd and never maps
 * the arena; every command it uses (including create/destroy/shrink/tune/validate) is
 * allowed to a monitor.  Requests carry increasing ids; a reply with another id is skipped
 * (the daemon answers in order, so that only happens to an unsolicited line), except a
 * refusal with "id": null, which the daemon sends before closing an unadmitted peer.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "slabctl.h"
#include "sockpath.h"

#define REPLY_TIMEOUT_MS 10000
#define REPLY_MAX        (64u << 20)

void ctl_init(struct ctl *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->next_id = 1;
}

void ctl_close(struct ctl *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->len = c->cap = 0;
}

static const char *errname(int err)
{
	const char *n = slabd_errno_name(err);

	if (slabd_errno_value(n) == err)
		return n;
	n = strerrorname_np(err);
	return n ? n : "EIO";
}

void ctl_set_errno(struct ctl *c, int err, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->err, sizeof(c->err), "%s: %s (%s)", msg, strerror(err), errname(err));
}

int ctl_fail(struct ctl *c, int rc)
{
	fprintf(stderr, "slabctl: %s\n", c->err);
	return rc;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One line from the socket (without its newline), malloc'd.  0 or EXIT_UNREACHABLE. */
static int read_line(struct ctl *c, char **out)
{
	int64_t deadline = now_ms() + REPLY_TIMEOUT_MS;

	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		ssize_t n;

		if (nl) {
			size_t ll = (size_t)(nl - c->buf);
			char *line = malloc(ll + 1);
			if (!line) {
				ctl_set_errno(c, ENOMEM, "reading a reply");
				return EXIT_UNREACHABLE;
			}
			memcpy(line, c->buf, ll);
			line[ll] = '\0';
			memmove(c->buf, nl + 1, c->len - ll - 1);
			c->len -= ll + 1;
			*out = line;
			return 0;
		}
		if (c->len + 65536 > c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 131072;
			char *b;
			if (cap > REPLY_MAX) {
				ctl_set_errno(c, EMSGSIZE, "reply from slabd longer than %u bytes",
					      REPLY_MAX);
				return EXIT_UNREACHABLE;
			}
			if (!(b = realloc(c->buf, cap))) {
				ctl_set_errno(c, ENOMEM, "reading a reply");
				return EXIT_UNREACHABLE;
			}
			c->buf = b;
			c->cap = cap;
		}
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		if (n == 0) {
			snprintf(c->err, sizeof(c->err),
				 "slabd at %s closed the connection (ECONNRESET)", c->path);
			return EXIT_UNREACHABLE;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			struct pollfd p = { .fd = c->fd, .events = POLLIN };
			int64_t left = deadline - now_ms();
			if (left <= 0) {
				snprintf(c->err, sizeof(c->err),
					 "slabd at %s did not answer within %d s (ETIMEDOUT)", c->path,
					 REPLY_TIMEOUT_MS / 1000);
				return EXIT_UNREACHABLE;
			}
			if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
				ctl_set_errno(c, errno, "waiting for slabd");
				return EXIT_UNREACHABLE;
			}
			continue;
		}
		ctl_set_errno(c, errno, "reading from slabd at %s", c->path);
		return EXIT_UNREACHABLE;
	}
}

static int send_all(struct ctl *c, const char *s, size_t len)
{
	while (len) {
		ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ctl_set_errno(c, errno, "writing to slabd at %s", c->path);
			return EXIT_UNREACHABLE;
		}
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

int ctl_call(struct ctl *c, json_t *req, json_t **reply, char **line)
{
	long long id = c->next_id++;
	char send_err[sizeof(c->err)];
	char *s;
	int rc;

	*reply = NULL;
	if (line)
		*line = NULL;
	json_object_set_new(req, "id", json_integer(id));
	s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!s) {
		ctl_set_errno(c, ENOMEM, "encoding a request");
		return EXIT_UNREACHABLE;
	}
	rc = send_all(c, s, strlen(s));
	free(s);
	if (!rc)
		rc = send_all(c, "\n", 1);
	if (rc)
		memcpy(send_err, c->err, sizeof(send_err));
	for (;;) {
		json_error_t jerr;
		json_t *r, *rid, *ok;
		char *l;

		/* After a failed send, a refusal the daemon sent before closing may still be
		 * waiting to be read: it says more than "broken pipe". */
		if (read_line(c, &l)) {
			if (rc)
				memcpy(c->err, send_err, sizeof(send_err));
			return EXIT_UNREACHABLE;
		}
		r = json_loads(l, 0, &jerr);
		if (!json_is_object(r)) {
			snprintf(c->err, sizeof(c->err), "slabd sent a line that is not a JSON object: %s (EPROTO)",
				 r ? "not an object" : jerr.text);
			json_decref(r);
			free(l);
			return EXIT_UNREACHABLE;
		}
		rid = json_object_get(r, "id");
		ok = json_object_get(r, "ok");
		if (!(json_is_integer(rid) && json_integer_value(rid) == id) &&
		    !(json_is_null(rid) && json_is_false(ok))) {
			json_decref(r); /* not ours */
			free(l);
			continue;
		}
		*reply = r;
		if (line)
			*line = l;
		else
			free(l);
		if (json_is_true(ok))
			return 0;
		snprintf(c->err, sizeof(c->err), "%s (%s)",
			 jstr(r, "message") ? jstr(r, "message") : "request failed",
			 jstr(r, "error") ? jstr(r, "error") : "EIO");
		return EXIT_DAEMON;
	}
}

int ctl_connect(struct ctl *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_t *reply;
	int rc;

	if (c->fd >= 0)
		return 0;
	if (slabd_socket_path(c->sock_arg, c->path, sizeof(c->path))) {
		snprintf(c->err, sizeof(c->err),
			 "socket path too long (at most %zu bytes) (ENAMETOOLONG)",
			 sizeof(sa.sun_path) - 1);
		return EXIT_UNREACHABLE;
	}
	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		ctl_set_errno(c, errno, "socket");
		return EXIT_UNREACHABLE;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = errno;
		ctl_set_errno(c, err, "cannot reach slabd at %s", c->path);
		close(c->fd);
		c->fd = -1;
		return EXIT_UNREACHABLE;
	}
	rc = ctl_call(c, json_pack("{s:s, s:s, s:i}", "cmd", "hello", "role", "monitor",
				   "version", SLABD_PROTOCOL_VERSION),
		      &reply, NULL);
	if (!rc) {
		snprintf(c->server, sizeof(c->server), "%s",
			 jstr(reply, "server") ? jstr(reply, "server") : "slabd");
		c->server_pid = (int)jint(reply, "pid");
	}
	json_decref(reply);
	if (rc) {
		/* A refused hello (EACCES, EPROTO) leaves nothing to talk to. */
		close(c->fd);
		c->fd = -1;
	}
	return rc;
}

int ctl_request(struct ctl *c, json_t *req, json_t **reply)
{
	char *line = NULL;
	int rc = ctl_connect(c);

	*reply = NULL;
	if (rc) {
		json_decref(req);
		return ctl_fail(c, rc);
	}
	rc = ctl_call(c, req, reply, &line);
	if (c->json && line)
		printf("%s\n", line);
	free(line);
	if (rc) {
		json_decref(*reply);
		*reply = NULL;
		return ctl_fail(c, rc);
	}
	return 0;
}
