/* config.c - slabd's --config file: who may attach, and the limits.
 *
 * One setting per line, "KEY VALUE", blanks around; '#' starts a comment (to the end of
 * the line); blank lines are ignored:
 *
 *   # /etc/slabd.conf
 *   allow-uid 1000            # a number or a user name (repeatable)
 *   allow-gid slabusers       # a number or a group name (repeatable)
 *   max-connections 1024
 *   max-connections-per-uid 256
 *   max-pending 256
 *   max-line 64K
 *
 * allow-uid / allow-gid add to the lists given with --allow-uid / --allow-gid (both lists
 * admit).  A limit given on the command line wins over the file's.  An unknown key, a bad
 * value or an unreadable file stops slabd at start-up with "FILE:LINE: why": a daemon
 * that silently ignored half its admission rules would be worse than one that refuses to
 * start.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slabd.h"

int config_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -1;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (shift && *end == 'i')
		end++;
	if (*end == 'B')
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

int config_parse_id(const char *s, int is_gid, unsigned long *out)
{
	char *end;

	if (isdigit((unsigned char)*s)) {
		errno = 0;
		*out = strtoul(s, &end, 10);
		return errno || *end || *out > 0xfffffffeul ? -1 : 0;
	}
	if (is_gid) {
		struct group *g = getgrnam(s);
		if (!g)
			return -1;
		*out = g->gr_gid;
	} else {
		struct passwd *p = getpwnam(s);
		if (!p)
			return -1;
		*out = p->pw_uid;
	}
	return 0;
}

static int set_limit(const char *key, const char *val, unsigned bit, uint64_t lo, uint64_t hi,
		     struct slabd_options *o, void *field, int is_u32, char *why, size_t wlen)
{
	uint64_t v;

	if (config_parse_size(val, &v) || v < lo || v > hi) {
		snprintf(why, wlen, "%s takes a number from %llu to %llu, not '%s'", key,
			 (unsigned long long)lo, (unsigned long long)hi, val);
		return -1;
	}
	if (o->cli_set & bit)
		return 0; /* the command line wins */
	if (is_u32)
		*(uint32_t *)field = (uint32_t)v;
	else
		*(unsigned *)field = (unsigned)v;
	return 0;
}

static int apply(struct slabd_options *o, const char *key, const char *val, char *why,
		 size_t wlen)
{
	unsigned long id;

	if (!strcmp(key, "allow-uid") || !strcmp(key, "allow-gid")) {
		int gid = key[6] == 'g';
		unsigned *nr = gid ? &o->nr_allow_gid : &o->nr_allow_uid;

		if (config_parse_id(val, gid, &id)) {
			snprintf(why, wlen, "%s: no %s '%s'", key, gid ? "group" : "user", val);
			return -1;
		}
		if (*nr >= SLABD_MAX_ALLOW) {
			snprintf(why, wlen, "more than %d %s entries", SLABD_MAX_ALLOW, key);
			return -1;
		}
		if (gid)
			o->allow_gid[(*nr)++] = (gid_t)id;
		else
			o->allow_uid[(*nr)++] = (uid_t)id;
		return 0;
	}
	if (!strcmp(key, "max-connections"))
		return set_limit(key, val, SLABD_SET_MAX_CONNECTIONS, 1, 1u << 20, o,
				 &o->max_connections, 0, why, wlen);
	if (!strcmp(key, "max-connections-per-uid"))
		return set_limit(key, val, SLABD_SET_MAX_CONN_PER_UID, 1, 1u << 20, o,
				 &o->max_conn_per_uid, 0, why, wlen);
	if (!strcmp(key, "max-pending"))
		return set_limit(key, val, SLABD_SET_MAX_PENDING, 1, 1u << 20, o, &o->max_pending,
				 0, why, wlen);
	if (!strcmp(key, "max-line"))
		return set_limit(key, val, SLABD_SET_MAX_LINE, SLABD_MIN_LINE, SLABD_MAX_MAX_LINE, o,
				 &o->max_line, 1, why, wlen);
	snprintf(why, wlen, "unknown setting '%s' (allow-uid, allow-gid, max-connections, "
		 "max-connections-per-uid, max-pending, max-line)", key);
	return -1;
}

int config_load(const char *path, struct slabd_options *o, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[1024], why[256];
	unsigned lineno = 0;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *key, *val, *end;
		size_t len = strlen(line);

		lineno++;
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			snprintf(err, errlen, "%s:%u: line too long", path, lineno);
			fclose(f);
			return -1;
		}
		if ((end = strchr(p, '#')))
			*end = 0;
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			continue;
		key = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		if (*p)
			*p++ = 0;
		while (isspace((unsigned char)*p))
			p++;
		val = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		end = p;
		while (isspace((unsigned char)*p))
			p++;
		if (!*val || *p) {
			snprintf(err, errlen, "%s:%u: expected 'KEY VALUE'", path, lineno);
			fclose(f);
			return -1;
		}
		*end = 0;
		if (apply(o, key, val, why, sizeof(why))) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			fclose(f);
			return -1;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		fclose(f);
		return -1;
	}
	fclose(f);
	return 0;
}
