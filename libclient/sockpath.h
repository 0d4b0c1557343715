/* sockpath.h - the rule that names slabd's socket, shared by slabd, libslab and slabctl:
 * an explicit path, else $SLABD_SOCKET, else $XDG_RUNTIME_DIR/slabd.sock, else
 * /tmp/slabd-<uid>.sock.  Internal to the project (not exported from libslab.so). */
#ifndef SLABD_SOCKPATH_H
#define SLABD_SOCKPATH_H

#include <stddef.h>

/* Write the socket path into buf.  0, or -ENAMETOOLONG when it does not fit a
 * sockaddr_un (107 bytes). */
int slabd_socket_path(const char *explicit_path, char *buf, size_t len);

/* errno value <-> its name ("ENOENT"); unknown values give "EIO" / 0. */
const char *slabd_errno_name(int err);
int slabd_errno_value(const char *name);

#define SLABD_PROTOCOL_VERSION 1
#define SLABD_MAX_LINE (64u << 10)

#endif
