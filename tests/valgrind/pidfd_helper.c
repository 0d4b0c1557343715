/* pidfd_helper.c - pidfd_open(2) on behalf of a slabd under valgrind (see
 * pidfd_preload.c): started by it with the fd of its end of a socketpair as the only
 * argument, run natively (valgrind --trace-children=no), it answers each pid with the
 * kernel's pidfd (SCM_RIGHTS) or errno, and exits when slabd closes the socketpair or
 * dies. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pidfd_proto.h"

int main(int argc, char **argv)
{
	int chan;

	if (argc != 2)
		return 2;
	chan = atoi(argv[1]);
	/* Gone with slabd, even if something else kept the socketpair open. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() == 1)
		return 1;
	/* Nothing else of slabd's (its socket, the arena) stays open in here. */
	if (chan != 3 && (dup2(chan, 3) != 3 || close(chan)))
		return 1;
	chan = 3;
	close_range(4, ~0u, 0);
	for (;;) {
		struct pidfd_req req;
		struct pidfd_rep rep = { 0 };
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} cbuf;
		struct iovec iov = { &rep, sizeof(rep) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n = recv(chan, &req, sizeof(req), 0);
		int fd;

		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(req))
			return 0; /* slabd closed its end, or exited */
		fd = (int)syscall(SYS_pidfd_open, req.pid, req.flags);
		if (fd < 0) {
			rep.err = errno;
		} else {
			struct cmsghdr *cm;

			memset(cbuf.b, 0, sizeof(cbuf.b));
			mh.msg_control = cbuf.b;
			mh.msg_controllen = sizeof(cbuf.b);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		}
		n = sendmsg(chan, &mh, MSG_NOSIGNAL);
		if (fd >= 0)
			close(fd);
		if (n != (ssize_t)sizeof(rep))
			return 0;
	}
}
