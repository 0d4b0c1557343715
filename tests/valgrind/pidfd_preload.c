/* pidfd_preload.c - pidfd_open(2) for a slabd running under valgrind 3.19 (make
 * check-valgrind), which does not know the syscall (434; "WARNING: unhandled amd64-linux
 * syscall: 434") and fails it with ENOSYS.  slabd then has no pid watch on its clients:
 * no death notice for a client whose socket a child keeps, no ghost slot for a client
 * whose connection broke (adopt_keep_ghost), zombies taken for alive after a restart.
 * The tests of that behaviour (test_protocol's socket_left after a client hello,
 * test_restart's test_dead_while_down) then fail, for valgrind's sake, not slabd's.
 *
 * LD_PRELOADed into slabd (SLABD_WRAPPER="env LD_PRELOAD=.../pidfd_preload.so valgrind
 * ..."), it takes slabd's only raw syscall, syscall(SYS_pidfd_open, pid, flags)
 * (daemon/server.c, server_watch_pid), and has the kernel's pidfd made outside
 * valgrind: by pidfd_helper (next to this library), a child started at the first call,
 * which valgrind (--trace-children=no) runs natively.  It opens the pidfd and sends it
 * back over a socketpair (SCM_RIGHTS, which valgrind handles), so slabd polls a real
 * pidfd, as it does without valgrind.  Every other syscall() goes to libc's.
 *
 * Only for tests; make check-valgrind builds it into build/valgrind/.  Once the installed
 * valgrind handles pidfd_open, drop it from SLABD_WRAPPER in the Makefile.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "pidfd_proto.h"


static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int chan = -1;      /* our end of the socketpair to the helper */
static pid_t chan_owner;   /* the process that started it (a forked child starts its own;
                            * slabd does not fork today: defensive) */

/* pidfd_helper's path: this library's directory + "/pidfd_helper". */
static int helper_path(char *buf, size_t cap)
{
	Dl_info info;
	const char *slash;

	if (!dladdr((void *)helper_path, &info) || !info.dli_fname ||
	    !(slash = strrchr(info.dli_fname, '/')))
		return -1;
	return (size_t)snprintf(buf, cap, "%.*s/pidfd_helper", (int)(slash - info.dli_fname),
				info.dli_fname) < cap ? 0 : -1;
}

/* Start the helper (under the lock).  0, or -1 with errno. */
static int start_helper(void)
{
	static char *const envp[] = { NULL }; /* not valgrind's LD_PRELOAD, nor ours */
	char path[PATH_MAX], arg[16];
	int sv[2];
	pid_t pid;

	if (helper_path(path, sizeof(path))) {
		errno = ENOSYS;
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -1;
	snprintf(arg, sizeof(arg), "%d", sv[1]);
	pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls: slabd may have threads (the stocker). */
		if (fcntl(sv[1], F_SETFD, 0) == 0)
			execle(path, path, arg, (char *)NULL, envp);
		_exit(127);
	}
	close(sv[1]);
	chan = sv[0];
	chan_owner = getpid();
	return 0;
}

/* pidfd_open through the helper: the fd, or -1 with errno (the kernel's, or ENOSYS if the
 * helper cannot be reached, which slabd handles as valgrind's own ENOSYS). */
static long proxy_pidfd_open(pid_t pid, unsigned flags)
{
	struct pidfd_req req = { .pid = pid, .flags = flags };
	struct pidfd_rep rep = { .err = ENOSYS };
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { &rep, sizeof(rep) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
			     .msg_controllen = sizeof(cbuf.b) };
	struct cmsghdr *cm;
	int fd = -1;
	ssize_t n;

	pthread_mutex_lock(&lock);
	if (chan >= 0 && chan_owner != getpid())
		chan = -1; /* the parent's helper; its fd is the parent's business */
	if (chan < 0 && start_helper()) {
		int e = errno;

		pthread_mutex_unlock(&lock);
		fprintf(stderr, "pidfd_preload: cannot start pidfd_helper: %s\n", strerror(e));
		errno = ENOSYS;
		return -1;
	}
	memset(cbuf.b, 0, sizeof(cbuf.b));
	if (send(chan, &req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req) ||
	    (n = recvmsg(chan, &mh, MSG_CMSG_CLOEXEC)) != (ssize_t)sizeof(rep)) {
		pthread_mutex_unlock(&lock);
		fprintf(stderr, "pidfd_preload: pidfd_helper does not answer\n");
		errno = ENOSYS;
		return -1;
	}
	pthread_mutex_unlock(&lock);
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
	if (rep.err || fd < 0) {
		if (fd >= 0)
			close(fd);
		errno = rep.err ? rep.err : EIO;
		return -1;
	}
	return fd; /* close-on-exec (MSG_CMSG_CLOEXEC), as pidfd_open's own */
}

long syscall(long nr, ...)
{
	static long (*libc_syscall)(long, ...);
	long a[6];
	va_list ap;

	/* As libc's syscall(): six argument words, whatever the call uses. */
	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_pidfd_open)
		return proxy_pidfd_open((pid_t)a[0], (unsigned)a[1]);
	if (!libc_syscall)
		libc_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	if (!libc_syscall) {
		errno = ENOSYS;
		return -1;
	}
	return libc_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
