/* pidfd_proto.h - the messages between pidfd_preload.so (in slabd under valgrind) and
 * pidfd_helper (native), one each way per pidfd_open, on a SOCK_SEQPACKET socketpair. */
#ifndef SLABD_PIDFD_PROTO_H
#define SLABD_PIDFD_PROTO_H

#include <sys/types.h>

struct pidfd_req {
	pid_t    pid;
	unsigned flags;
};

/* err: 0, and the pidfd rides along (SCM_RIGHTS); else pidfd_open's errno. */
struct pidfd_rep {
	int err;
};

#endif
