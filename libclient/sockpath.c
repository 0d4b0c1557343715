/* sockpath.c - see sockpath.h. */
#include "sockpath.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

int slabd_socket_path(const char *explicit_path, char *buf, size_t len)
{
	const char *env = getenv("SLABD_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path);
	int n;

	if (explicit_path && *explicit_path)
		n = snprintf(buf, len, "%s", explicit_path);
	else if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(buf, len, "%s/slabd.sock", xdg);
	else
		n = snprintf(buf, len, "/tmp/slabd-%u.sock", (unsigned)getuid());
	if (n < 0 || (size_t)n >= len || (size_t)n >= max)
		return -ENAMETOOLONG;
	return 0;
}

static const struct {
	int         err;
	const char *name;
} names[] = {
	{ EPERM, "EPERM" },         { ENOENT, "ENOENT" },       { EIO, "EIO" },
	{ ENOMEM, "ENOMEM" },       { EACCES, "EACCES" },       { EBUSY, "EBUSY" },
	{ EEXIST, "EEXIST" },       { EINVAL, "EINVAL" },       { ENOSPC, "ENOSPC" },
	{ E2BIG, "E2BIG" },         { EAGAIN, "EAGAIN" },       { ENAMETOOLONG, "ENAMETOOLONG" },
	{ ENOSYS, "ENOSYS" },       { EPROTO, "EPROTO" },       { EMSGSIZE, "EMSGSIZE" },
	{ EUSERS, "EUSERS" },       { EDQUOT, "EDQUOT" },       { ECONNREFUSED, "ECONNREFUSED" },
	{ ENOTCONN, "ENOTCONN" },   { EBADMSG, "EBADMSG" },     { EOPNOTSUPP, "EOPNOTSUPP" },
	{ ETIMEDOUT, "ETIMEDOUT" }, { ECONNRESET, "ECONNRESET" }, { EFAULT, "EFAULT" },
	{ EALREADY, "EALREADY" },
};

const char *slabd_errno_name(int err)
{
	if (err < 0)
		err = -err;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].err == err)
			return names[i].name;
	return "EIO";
}

int slabd_errno_value(const char *name)
{
	for (size_t i = 0; name && i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i].name, name) == 0)
			return names[i].err;
	return 0;
}
