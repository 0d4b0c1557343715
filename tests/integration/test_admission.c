/* test_admission.c - guards who may attach to slabd and what each gets (DESIGN.md
 * "Reliability and security", issue 7):
 *
 *   - the socket is 0660 and the directories slabd creates for it are 0750, whatever the
 *     umask; an existing directory is left alone;
 *   - a monitor (hello with role monitor, hello without a role, or no hello at all) never
 *     receives a file descriptor: recvmsg with a control buffer finds no SCM_RIGHTS, while
 *     the same code does receive one for a client hello (the method can see an fd);
 *   - the arena fd a client receives is a memfd sealed F_SEAL_GROW | F_SEAL_SHRINK |
 *     F_SEAL_SEAL: ftruncate (shrink and grow), fallocate and writes past the end fail
 *     with EPERM, no seal can be added, and the size is unchanged;
 *   - a process of another uid (nobody, through setpriv) is refused: by the file system
 *     when the socket is 0660 (connect EACCES), and by slabd itself when the socket is
 *     0666 (the EACCES reply line, logged with its pid and uid); libslab returns -EACCES
 *     both times.  It is admitted with --allow-uid nobody, with --allow-gid nogroup, and
 *     with "allow-uid 65534" in a --config file, and can then create a cache and allocate.
 *
 *   - a --config file with an unknown key, a bad value, a missing value or an unknown user
 *     stops slabd at start-up with exit status 2 and "FILE:LINE: why"; a valid one (with
 *     comments, blank lines, names) is accepted; command-line limits are range-checked too.
 *
 * The nobody part needs root, setpriv and the nobody user: it is skipped, with the reason
 * printed, when one is missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct th_daemon daemon_;

static int setup(void **state)
{
	(void)state;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	th_teardown(&daemon_);
	return 0;
}

static void stop_clean(void)
{
	assert_int_equal(th_stop(&daemon_), 0);
}

/* ---- a raw peer that looks for file descriptors ------------------------------------------ */

struct raw_reply {
	json_t *json;      /* the first reply line, parsed */
	int     nfds;      /* file descriptors that came with it */
	int     fd;        /* the first of them, or -1 */
	bool    ctrunc;    /* MSG_CTRUNC: the kernel had more control data than room */
};

/* Read one reply line with recvmsg and a generous control buffer, collecting every fd
 * that arrives (the fd rides on the line's first byte). */
static void raw_read(int s, struct raw_reply *out)
{
	char buf[65536], *nl = NULL;
	size_t len = 0;

	memset(out, 0, sizeof(*out));
	out->fd = -1;
	while (!nl) {
		union {
			char b[CMSG_SPACE(sizeof(int) * 16)];
			struct cmsghdr align;
		} cbuf;
		struct iovec iov = { buf + len, 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
				     .msg_controllen = sizeof(cbuf.b) };
		struct pollfd pfd = { .fd = s, .events = POLLIN };
		ssize_t n;

		if (len >= sizeof(buf) - 1 || poll(&pfd, 1, 5000) != 1)
			fail_msg("no reply line within 5 s");
		/* One byte at a time: the reply's bytes and their control data together. */
		n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0)
			fail_msg("recvmsg: %s", n ? strerror(errno) : "EOF");
		if (mh.msg_flags & MSG_CTRUNC)
			out->ctrunc = true;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
				if (out->fd < 0)
					out->fd = fd;
				else
					close(fd);
				out->nfds++;
			}
		}
		len += (size_t)n;
		buf[len] = 0;
		nl = strchr(buf, '\n');
	}
	*nl = 0;
	out->json = json_loads(buf, 0, NULL);
	if (!out->json)
		fail_msg("reply is not JSON: %.300s", buf);
}

static void raw_send(int s, const char *line)
{
	size_t len = strlen(line);

	if (send(s, line, len, MSG_NOSIGNAL) != (ssize_t)len || send(s, "\n", 1, MSG_NOSIGNAL) != 1)
		fail_msg("send: %s", strerror(errno));
}

/* One request on s, its reply read with recvmsg. */
static void raw_exchange(int s, const char *line, struct raw_reply *out)
{
	raw_send(s, line);
	raw_read(s, out);
}

/* ---- the socket and its directory --------------------------------------------------------- */

static void test_socket_modes(void **state)
{
	char dir[64], sock[100], sub1[96], sub2[112], log[128];
	struct stat st;
	mode_t old_mask;
	long long until;
	pid_t pid;
	int fd = -1, rc;

	(void)state;
	/* The harness's daemon: the socket is 0660 in the caller's existing directory. */
	th_start_or_fail(&daemon_, NULL);
	assert_int_equal(lstat(daemon_.socket, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(stat(daemon_.dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700); /* mkdtemp's: left as it was */
	stop_clean();

	/* A socket two missing directories deep, slabd started under a permissive umask:
	 * both directories 0750, the socket 0660. */
	snprintf(dir, sizeof(dir), "/tmp/slabd-adm-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(sub1, sizeof(sub1), "%s/run", dir);
	snprintf(sub2, sizeof(sub2), "%s/run/slabd", dir);
	snprintf(sock, sizeof(sock), "%s/run/slabd/s.sock", dir);
	snprintf(log, sizeof(log), "%s/log", dir);
	old_mask = umask(0);
	pid = th_spawn_slabd(log, (const char *const[]){ "--socket", sock, "--arena-size", "16M",
							 NULL });
	umask(old_mask);
	assert_true(pid > 0);
	for (until = th_now_ms() + th_ms(5000); th_now_ms() < until;) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		close(fd);
		fd = -1;
		usleep(10000);
	}
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(stat(sub1, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(stat(sub2, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(lstat(sock, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	kill(pid, SIGTERM);
	rc = th_wait_slabd(pid, log, 10000);
	assert_int_equal(rc, 0);
	unlink(log);
	rmdir(sub2);
	rmdir(sub1);
	assert_int_equal(rmdir(dir), 0);
}

/* ---- monitors never get an fd; clients get a sealed memfd ---------------------------------- */

static void assert_no_fd(const struct raw_reply *r, const char *what)
{
	if (r->nfds || r->ctrunc)
		fail_msg("%s: %d file descriptor(s) came with the reply%s", what, r->nfds,
			 r->ctrunc ? " (and MSG_CTRUNC)" : "");
}

static void test_monitor_gets_no_fd(void **state)
{
	static const char *const requests[] = {
		"{\"id\":2,\"cmd\":\"cache.list\"}",
		"{\"id\":3,\"cmd\":\"arena.stats\"}",
		"{\"id\":4,\"cmd\":\"clients.list\"}",
		"{\"id\":5,\"cmd\":\"cache.create\",\"name\":\"adm\",\"size\":64}",
		"{\"id\":6,\"cmd\":\"cache.stats\",\"name\":\"adm\"}",
		"{\"id\":7,\"cmd\":\"hello\",\"role\":\"client\"}",   /* EPROTO: said already */
		"{\"id\":8,\"cmd\":\"cache.open\",\"name\":\"adm\"}", /* EPERM: not a client */
		"{\"id\":9,\"cmd\":\"slab.grant\",\"cache\":0}",
	};
	static const char *const hellos[] = {
		"{\"id\":1,\"cmd\":\"hello\",\"version\":1,\"role\":\"monitor\"}",
		"{\"id\":1,\"cmd\":\"hello\"}",
		NULL, /* no hello at all */
	};
	struct raw_reply r;

	(void)state;
	th_start_or_fail(&daemon_, NULL);
	for (size_t h = 0; h < sizeof(hellos) / sizeof(hellos[0]); h++) {
		int s = th_connect(&daemon_);

		assert_true(s >= 0);
		if (hellos[h]) {
			raw_exchange(s, hellos[h], &r);
			th_assert_ok(r.json, "hello as monitor");
			assert_string_equal(th_jstr(r.json, "role"), "monitor");
			assert_null(json_object_get(r.json, "client"));
			assert_no_fd(&r, hellos[h]);
			json_decref(r.json);
		}
		for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
			/* Without a hello, a client hello would make it a client. */
			if (!hellos[h] && strstr(requests[i], "\"role\":\"client\""))
				continue;
			raw_exchange(s, requests[i], &r);
			assert_no_fd(&r, requests[i]);
			json_decref(r.json);
		}
		close(s);
	}

	/* The control: the same reader does see the fd of a client hello. */
	{
		int s = th_connect(&daemon_);

		assert_true(s >= 0);
		raw_exchange(s, "{\"id\":1,\"cmd\":\"hello\",\"version\":1,\"role\":\"client\"}", &r);
		th_assert_ok(r.json, "hello as client");
		assert_int_equal(r.nfds, 1);
		assert_true(r.fd >= 0);
		close(r.fd);
		json_decref(r.json);
		/* Nothing else on this connection carries one. */
		raw_exchange(s, "{\"id\":2,\"cmd\":\"cache.list\"}", &r);
		assert_no_fd(&r, "cache.list after a client hello");
		json_decref(r.json);
		close(s);
	}
	stop_clean();
}

static void test_arena_fd_sealed(void **state)
{
	struct raw_reply r;
	struct stat st;
	off_t size;
	int s, fd, seals;
	char byte = 1;
	void *map;

	(void)state;
	th_start_or_fail(&daemon_, (const char *const[]){ "--arena-size", "16M", NULL });
	s = th_connect(&daemon_);
	assert_true(s >= 0);
	raw_exchange(s, "{\"id\":1,\"cmd\":\"hello\",\"version\":1,\"role\":\"client\"}", &r);
	th_assert_ok(r.json, "hello as client");
	assert_int_equal(r.nfds, 1);
	fd = r.fd;
	size = (off_t)th_jint(r.json, "arena_size");
	assert_int_equal(size, 16 << 20);
	json_decref(r.json);

	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, size);
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0)
		fail_msg("F_GET_SEALS: %s (not a memfd?)", strerror(errno));
	fprintf(stderr, "arena fd seals: 0x%x\n", seals);
	assert_int_equal(seals & (F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL),
			 F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
	assert_int_equal(seals & F_SEAL_WRITE, 0); /* clients write objects through it */

	errno = 0;
	assert_int_equal(ftruncate(fd, size - 4096), -1);
	assert_int_equal(errno, EPERM);
	errno = 0;
	assert_int_equal(ftruncate(fd, 0), -1);
	assert_int_equal(errno, EPERM);
	errno = 0;
	assert_int_equal(ftruncate(fd, size + 4096), -1);
	assert_int_equal(errno, EPERM);
	errno = 0;
	assert_int_equal(fallocate(fd, 0, size, 4096), -1);
	assert_int_equal(errno, EPERM);
	errno = 0;
	assert_int_equal(pwrite(fd, &byte, 1, size), -1);
	assert_int_equal(errno, EPERM);
	errno = 0;
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, size);
	assert_int_equal(fcntl(fd, F_GET_SEALS), seals);

	/* The mapping the seals protect still works, and the daemon is unharmed. */
	map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	munmap(map, (size_t)size);
	close(fd);
	{
		json_t *j = th_request(&daemon_, "{\"id\":1,\"cmd\":\"arena.stats\"}");

		th_assert_ok(j, "arena.stats after the truncation attempts");
		assert_int_equal(th_jint(j, "size"), size);
		json_decref(j);
	}
	close(s);
	stop_clean();
}

/* ---- another uid ----------------------------------------------------------------------- */

enum { EX_OK = 0, EX_REFUSED = 13, EX_OTHER = 20, EX_WORK = 21 };

/* --as-other SOCKET: runs as nobody; connect, and when admitted use a cache. */
static int other_main(const char *sock)
{
	struct slab_cache_config cfg = { .size = 48, .node = SLAB_NODE_LOCAL };
	slab_pool *pool;
	slab_cache *c;
	void *o;
	int rc;

	if (th_child_init())
		return EX_OTHER;
	alarm(60);
	fprintf(stderr, "other: uid %u gid %u\n", (unsigned)getuid(), (unsigned)getgid());
	rc = slab_pool_connect(sock, &pool);
	fprintf(stderr, "other: slab_pool_connect: %d (%s)\n", rc, slab_strerror(rc));
	if (rc == -EACCES)
		return EX_REFUSED;
	if (rc)
		return EX_OTHER;
	rc = slab_cache_create(pool, "other-uid", &cfg, &c);
	if (rc) {
		fprintf(stderr, "other: slab_cache_create: %s\n", slab_strerror(rc));
		return EX_WORK;
	}
	o = slab_alloc(c);
	if (!o) {
		fprintf(stderr, "other: slab_alloc: %s\n", slab_strerror(errno));
		return EX_WORK;
	}
	memset(o, 0x5a, cfg.size);
	if (slab_free(c, o) || slab_cache_close(c))
		return EX_WORK;
	slab_pool_disconnect(pool);
	return EX_OK;
}

static char setpriv_path[PATH_MAX];

/* Why the nobody tests cannot run here, or NULL. */
static const char *other_uid_missing(void)
{
	static const char *const dirs[] = { "/usr/bin", "/bin", "/usr/sbin", "/sbin" };
	struct passwd *pw = getpwnam("nobody");

	if (geteuid() != 0)
		return "not root: setpriv cannot change the uid";
	if (!pw || pw->pw_uid != 65534)
		return "no user nobody with uid 65534";
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(setpriv_path, sizeof(setpriv_path), "%s/setpriv", dirs[i]);
		if (access(setpriv_path, X_OK) == 0)
			return NULL;
	}
	return "setpriv is not installed (util-linux)";
}

/* Run this binary as nobody:nogroup without supplementary groups; its exit code. */
static int run_as_nobody(const char *sock)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	pid_t pid;
	int rc;

	assert_true(n > 0);
	exe[n] = 0;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		alarm(0);
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		execl(setpriv_path, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		      exe, "--as-other", sock, (char *)NULL);
		_exit(127);
	}
	th_track_child(pid);
	rc = th_wait_child(pid, 60);
	if (rc == 127)
		fail_msg("setpriv could not run %s as nobody (is its directory searchable?)", exe);
	return rc;
}

/* The harness's directory is 0700: let nobody reach the socket inside it. */
static void open_dir(void)
{
	assert_int_equal(chmod(daemon_.dir, 0755), 0);
}

static void test_other_uid(void **state)
{
	const char *why = other_uid_missing();
	char conf[160];
	FILE *f;

	(void)state;
	if (why) {
		printf("SKIP test_other_uid: %s\n", why);
		fprintf(stderr, "SKIP test_other_uid: %s\n", why);
		skip();
	}

	/* 1. Socket 0660 root:root: the file system refuses nobody (connect EACCES). */
	th_start_or_fail(&daemon_, NULL);
	open_dir();
	assert_int_equal(run_as_nobody(daemon_.socket), EX_REFUSED);
	assert_false(th_log_has(&daemon_, "refused pid")); /* it never reached slabd */

	/* 2. Socket 0666: nobody reaches slabd, which refuses uid 65534 itself. */
	assert_int_equal(chmod(daemon_.socket, 0666), 0);
	assert_int_equal(run_as_nobody(daemon_.socket), EX_REFUSED);
	assert_true(th_log_has(&daemon_, "uid 65534 gid 65534: uid not allowed by slabd"));
	assert_true(th_log_has(&daemon_, "refused pid "));
	stop_clean();

	/* 3. --allow-uid nobody (a name): admitted, and it can use a cache. */
	th_start_or_fail(&daemon_, (const char *const[]){ "--allow-uid", "nobody", NULL });
	open_dir();
	assert_int_equal(chmod(daemon_.socket, 0666), 0);
	assert_int_equal(run_as_nobody(daemon_.socket), EX_OK);
	assert_true(th_log_has(&daemon_, "client pid "));
	assert_false(th_log_has(&daemon_, "refused pid"));
	stop_clean();

	/* 4. --allow-gid nogroup: the primary gid admits it. */
	th_start_or_fail(&daemon_, (const char *const[]){ "--allow-gid", "65534", NULL });
	open_dir();
	assert_int_equal(chmod(daemon_.socket, 0666), 0);
	assert_int_equal(run_as_nobody(daemon_.socket), EX_OK);
	stop_clean();

	/* 5. The config file's allow-uid. */
	snprintf(conf, sizeof(conf), "/tmp/slabd-adm-%d.conf", (int)getpid());
	f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f, "# admission for test_admission\n\nallow-uid 65534   # nobody\n");
	fclose(f);
	th_start_or_fail(&daemon_, (const char *const[]){ "--config", conf, NULL });
	open_dir();
	assert_int_equal(chmod(daemon_.socket, 0666), 0);
	assert_int_equal(run_as_nobody(daemon_.socket), EX_OK);
	stop_clean();
	unlink(conf);
}

/* A raw peer of another uid reads the EACCES line itself (not only through libslab). */
static void test_other_uid_raw_reply(void **state)
{
	const char *why = other_uid_missing();
	char line[512] = "";
	pid_t pid;
	int pfd[2];
	ssize_t n, got = 0;

	(void)state;
	if (why) {
		printf("SKIP test_other_uid_raw_reply: %s\n", why);
		skip();
	}
	th_start_or_fail(&daemon_, NULL);
	open_dir();
	assert_int_equal(chmod(daemon_.socket, 0666), 0);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		char buf[512];
		int s;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
		    setresuid(65534, 65534, 65534))
			_exit(2);
		s = socket(AF_UNIX, SOCK_STREAM, 0);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", daemon_.socket);
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
			_exit(3);
		/* Read until EOF: one line, then slabd closes. */
		while ((n = read(s, buf, sizeof(buf))) > 0)
			if (write(pfd[1], buf, (size_t)n) != n)
				_exit(4);
		_exit(n == 0 ? 0 : 5);
	}
	th_track_child(pid);
	close(pfd[1]);
	while ((n = read(pfd[0], line + got, sizeof(line) - 1 - (size_t)got)) > 0)
		got += n;
	close(pfd[0]);
	assert_int_equal(th_wait_child(pid, 10), 0);
	line[got] = 0;
	assert_string_equal(line, "{\"id\":null,\"ok\":false,\"error\":\"EACCES\","
				  "\"message\":\"uid not allowed by slabd\"}\n");
	stop_clean();
}

/* ---- the config file's errors stop slabd at start-up ----------------------------------------- */

/* Run slabd with a config file holding text (and extra arguments, split on spaces); its
 * exit status and what it printed (its stdout and stderr, through a file: under
 * $SLABD_WRAPPER valgrind's report lands there too). */
static int run_with_config(const char *text, const char *extra, char *out, size_t cap)
{
	char conf[64], log[64], words[128], *save = NULL;
	const char *args[12] = { "--config", conf };
	size_t n = 2, got;
	FILE *f;
	pid_t pid;
	int rc;

	snprintf(conf, sizeof(conf), "/tmp/slabd-conf-%d.conf", (int)getpid());
	snprintf(log, sizeof(log), "/tmp/slabd-conf-%d.log", (int)getpid());
	f = fopen(conf, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	snprintf(words, sizeof(words), "%s", extra);
	for (char *w = strtok_r(words, " ", &save); w && n < 8; w = strtok_r(NULL, " ", &save))
		args[n++] = w;
	/* --socket in a directory that cannot be made: a config that passes fails later. */
	args[n++] = "--socket";
	args[n++] = "/proc/nonexistent/s.sock";
	args[n] = NULL;
	pid = th_spawn_slabd(log, args);
	assert_true(pid > 0);
	rc = th_wait_slabd(pid, log, 10000);
	f = fopen(log, "re");
	got = f ? fread(out, 1, cap - 1, f) : 0;
	out[got] = 0;
	if (f)
		fclose(f);
	unlink(log);
	unlink(conf);
	return rc;
}

static void test_config_errors(void **state)
{
	static const struct {
		const char *text, *extra, *want;
		int rc;
	} cases[] = {
		{ "max-lines 4\n", "", ":1: unknown setting 'max-lines'", 2 },
		{ "# ok\n\nmax-line 100\n", "", ":3: max-line takes a number from 256", 2 },
		{ "allow-uid no-such-user-here\n", "", ":1: allow-uid: no user", 2 },
		{ "allow-gid\n", "", ":1: expected 'KEY VALUE'", 2 },
		{ "max-pending 8 9\n", "", ":1: expected 'KEY VALUE'", 2 },
		{ "max-connections 0\n", "", ":1: max-connections takes a number from 1", 2 },
		/* Valid files: start-up goes on and fails only at the socket. */
		{ "allow-uid root # comment\n\tmax-line 1K\nmax-connections-per-uid 3\n", "",
		  "cannot create /proc/nonexistent", 1 },
		{ "max-line 100\n", "--max-line 4096", ":1: max-line takes", 2 },
		{ "max-pending 8\n", "--max-pending 0", "--max-pending takes 1", 2 },
	};
	char out[16384];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = run_with_config(cases[i].text, cases[i].extra, out, sizeof(out));

		if (rc != cases[i].rc || !strstr(out, cases[i].want))
			fail_msg("config %zu: exit %d (want %d), output: %s (want '%s')", i, rc,
				 cases[i].rc, out, cases[i].want);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_socket_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_monitor_gets_no_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_arena_fd_sealed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_uid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_uid_raw_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
	};

	if (argc == 3 && !strcmp(argv[1], "--as-other"))
		return other_main(argv[2]);
	if (argc > 1) {
		fprintf(stderr, "usage: %s [--as-other SOCKET]\n", argv[0]);
		return 2;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
