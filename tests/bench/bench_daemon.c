/* bench_daemon.c - see bench_daemon.h. */
#include "bench_daemon.h"
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_DAEMONS 8

static struct bench_daemon *started[MAX_DAEMONS];
static struct bench_daemon driver_daemon;
static pid_t owner;

static void at_exit(void)
{
	bench_daemon_kill_all();
}

static int try_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

static void log_tail(const char *path)
{
	char buf[2048];
	int fd = open(path, O_RDONLY);
	off_t end;
	ssize_t n;

	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	n = pread(fd, buf, sizeof(buf) - 1, end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0);
	close(fd);
	if (n > 0) {
		buf[n] = 0;
		fprintf(stderr, "--- slabd log (tail) ---\n%s\n", buf);
	}
}

static const char *slabd_binary(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("SLABD_BIN");

	if (env && *env)
		return env;
	snprintf(path, sizeof(path), "%s/../bin/slabd", bench_exe_dir());
	if (access(path, X_OK) == 0)
		return path;
	snprintf(path, sizeof(path), "%s/../../bin/slabd", bench_exe_dir());
	return path;
}

int bench_daemon_start(struct bench_daemon *d, const char *const *extra)
{
	const char *argv[40];
	int n = 0, slot = -1;
	pid_t parent = getpid();

	memset(d, 0, sizeof(*d));
	for (int i = 0; i < MAX_DAEMONS; i++)
		if (!started[i]) {
			slot = i;
			break;
		}
	if (slot < 0) {
		fprintf(stderr, "bench: too many daemons\n");
		return -1;
	}
	snprintf(d->dir, sizeof(d->dir), "/tmp/slabbench-XXXXXX");
	if (!mkdtemp(d->dir)) {
		fprintf(stderr, "bench: mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(d->socket, sizeof(d->socket), "%s/slabd.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/slabd.log", d->dir);
	argv[n++] = slabd_binary();
	argv[n++] = "--socket";
	argv[n++] = d->socket;
	argv[n++] = "--arena-size";
	argv[n++] = "512M";
	argv[n++] = "--log-level";
	argv[n++] = "warn";
	for (int i = 0; extra && extra[i] && n < 38; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	fflush(NULL);
	d->pid = fork();
	if (d->pid < 0) {
		fprintf(stderr, "bench: fork: %s\n", strerror(errno));
		rmdir(d->dir);
		return -1;
	}
	if (d->pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		setpgid(0, 0); /* ^C at the terminal reaches the driver, which stops us by PID */
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (owner != getpid()) {
		owner = getpid();
		atexit(at_exit); /* a child that exits early still stops its daemons */
	}
	started[slot] = d;
	for (int i = 0; i < 500; i++) {
		int fd = try_connect(d->socket), status;

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			fprintf(stderr, "bench: slabd (%s) exited during start-up\n", argv[0]);
			log_tail(d->log);
			d->pid = 0;
			started[slot] = NULL;
			unlink(d->log);
			rmdir(d->dir);
			return -1;
		}
		usleep(10000);
	}
	fprintf(stderr, "bench: slabd did not accept on %s within 5 s\n", d->socket);
	bench_daemon_stop(d);
	return -1;
}

static int stop_pid(pid_t pid)
{
	int status = 0;

	kill(pid, SIGTERM);
	for (int i = 0; i < 500; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return 128 + SIGKILL;
}

int bench_daemon_stop(struct bench_daemon *d)
{
	int rc;

	if (!d || d->pid <= 0)
		return -1;
	for (int i = 0; i < MAX_DAEMONS; i++)
		if (started[i] == d)
			started[i] = NULL;
	rc = stop_pid(d->pid);
	d->pid = 0;
	if (rc)
		log_tail(d->log);
	unlink(d->socket);
	unlink(d->log);
	rmdir(d->dir);
	return rc;
}

void bench_daemon_kill_all(void)
{
	if (getpid() != owner)
		return;
	for (int i = 0; i < MAX_DAEMONS; i++) {
		struct bench_daemon *d = started[i];

		if (!d || d->pid <= 0)
			continue;
		started[i] = NULL;
		stop_pid(d->pid);
		d->pid = 0;
		unlink(d->socket);
		unlink(d->log);
		rmdir(d->dir);
	}
}


int bench_daemon_ensure(void)
{
	const char *env = getenv("SLABD_SOCKET");
	int fd;

	if (env && *env) {
		fd = try_connect(env);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		fprintf(stderr, "bench: no slabd answers on $SLABD_SOCKET=%s; starting a private one\n",
			env);
	}
	if (bench_daemon_start(&driver_daemon, NULL))
		return -1;
	setenv("SLABD_SOCKET", driver_daemon.socket, 1);
	fprintf(stderr, "bench: started slabd pid %d on %s\n", (int)driver_daemon.pid,
		driver_daemon.socket);
	return 0;
}

int bench_request(const char *socket, const char *line, char *buf, size_t cap)
{
	int fd = try_connect(socket);
	size_t len = 0;
	struct timespec t0;

	if (fd < 0)
		return -1;
	if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) != 1) {
		close(fd);
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (len + 1 < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 5000) <= 0)
			break;
		n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(buf, '\n', len))
			break;
	}
	close(fd);
	buf[len] = 0;
	return memchr(buf, '\n', len) ? 0 : -1;
}

int bench_arena_stats(const char *socket, struct bench_arena_stats *out)
{
	char buf[1 << 16];
	json_t *r;
	int rc = -1;

	if (bench_request(socket, "{\"id\":1,\"cmd\":\"arena.stats\"}", buf, sizeof(buf)))
		return -1;
	r = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
	if (r && json_is_true(json_object_get(r, "ok"))) {
		out->size = (uint64_t)json_integer_value(json_object_get(r, "size"));
		out->resident_bytes = (uint64_t)json_integer_value(json_object_get(r, "resident_bytes"));
		out->meta_bytes = (uint64_t)json_integer_value(json_object_get(r, "meta_bytes"));
		out->used_bytes = 0;
		for (size_t i = 0; i < json_array_size(json_object_get(r, "nodes")); i++)
			out->used_bytes += (uint64_t)json_integer_value(json_object_get(
				json_array_get(json_object_get(r, "nodes"), i), "used_bytes"));
		rc = 0;
	}
	json_decref(r);
	return rc;
}

long long bench_cache_stat(const char *socket, const char *name, const char *field)
{
	char line[256], buf[1 << 16];
	long long v = -1;
	json_t *r, *c, *f;

	snprintf(line, sizeof(line), "{\"id\":1,\"cmd\":\"cache.stats\",\"name\":\"%.100s\"}", name);
	if (bench_request(socket, line, buf, sizeof(buf)))
		return -1;
	r = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
	c = json_array_get(json_object_get(r, "caches"), 0);
	f = json_object_get(c, field);
	if (!f)
		f = json_object_get(json_object_get(c, "counters"), field);
	if (json_is_integer(f))
		v = (long long)json_integer_value(f);
	json_decref(r);
	return v;
}

long long bench_cache_shrink(const char *socket, const char *name)
{
	char line[256], buf[4096];
	long long v = -1;
	json_t *r;

	if (name)
		snprintf(line, sizeof(line), "{\"id\":1,\"cmd\":\"cache.shrink\",\"name\":\"%.100s\"}", name);
	else
		snprintf(line, sizeof(line), "{\"id\":1,\"cmd\":\"cache.shrink\"}");
	if (bench_request(socket, line, buf, sizeof(buf)))
		return -1;
	r = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
	if (json_is_true(json_object_get(r, "ok")))
		v = (long long)json_integer_value(json_object_get(r, "released_slabs"));
	json_decref(r);
	return v;
}
