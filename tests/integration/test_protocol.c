/* test_protocol.c - guards slabd against bad input on its socket (DESIGN.md: "Bad input
 * gets a clear error and changes nothing ... The daemon survives any byte stream"):
 *
 *   - malformed JSON, non-objects, duplicate keys, a missing or non-string "cmd" get an
 *     error reply (EBADMSG / EINVAL, id null or echoed) and the same connection keeps
 *     working; blank lines are ignored; pipelined requests are answered in order;
 *   - unknown commands get ENOSYS; commands in the wrong state get EPROTO / EPERM;
 *     requests pipelined after a client hello (whose reply carries the arena fd) are
 *     answered too;
 *   - a line longer than 65536 bytes gets EMSGSIZE or a closed connection, while a long
 *     line under the limit is served;
 *   - seeded random binary garbage (NUL bytes included), also after a client hello, only
 *     ever gets ok:false replies, and a peer that never reads its replies is not waited on;
 *   - after each of these, a separate connection gets correct replies, and a libslab
 *     client in another process (its cache open, objects held) keeps working: its objects
 *     are intact and it can create caches, get fresh slabs and destroy caches;
 *   - finally the daemon shuts down cleanly (exit status 0, socket file removed).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define CHILD_ALARM   200u
#define ACK_MS        20000
#define HELD          100
#define ROUND_OBJS    2000
#define MAX_LINE      65536
#define GARBAGE_ROUNDS 12

enum {
	EX_OK = 0,
	EX_USAGE = 2,
	EX_CONNECT = 10,
	EX_CREATE,
	EX_ALLOC,
	EX_FREE,
	EX_HELD,       /* a held object changed */
	EX_PIPE,
	EX_DESTROY,
	EX_CLOSE,
	EX_STATS,
};

/* ---- the libslab client in another process ----------------------------------------- */

static uint64_t held_word(unsigned i, unsigned k)
{
	return 0xc11e000000000000ULL | ((uint64_t)i << 8) | k;
}

static int client_round(slab_pool *pool, unsigned round)
{
	struct slab_cache_config cfg = { .size = 48 + 16 * (round % 8), .node = SLAB_NODE_LOCAL };
	static void *objs[ROUND_OBJS];
	char name[32];
	slab_cache *c;
	int rc;

	/* Every step needs the daemon: create, fresh slabs, destroy. */
	snprintf(name, sizeof(name), "proto-round-%u", round);
	rc = slab_cache_create(pool, name, &cfg, &c);
	if (rc) {
		fprintf(stderr, "client: slab_cache_create(%s): %s\n", name, slab_strerror(rc));
		return EX_CREATE;
	}
	for (unsigned i = 0; i < ROUND_OBJS; i++) {
		objs[i] = slab_alloc(c);
		if (!objs[i]) {
			fprintf(stderr, "client: slab_alloc: %s\n", slab_strerror(errno));
			return EX_ALLOC;
		}
		memset(objs[i], (int)(i & 0xff), cfg.size);
	}
	for (unsigned i = 0; i < ROUND_OBJS; i++) {
		unsigned char *p = objs[i];
		if (p[0] != (i & 0xff) || p[cfg.size - 1] != (i & 0xff))
			return EX_HELD;
		rc = slab_free(c, p);
		if (rc) {
			fprintf(stderr, "client: slab_free: %s\n", slab_strerror(rc));
			return EX_FREE;
		}
	}
	rc = slab_cache_destroy(c);
	if (rc) {
		fprintf(stderr, "client: slab_cache_destroy(%s): %s\n", name, slab_strerror(rc));
		return EX_DESTROY;
	}
	return EX_OK;
}

/* --client SOCKET CMDFD ACKFD: open "proto", hold HELD objects; on 'P' check them and run
 * a round, answer 'K'; on 'Q' free everything, close, exit 0. */
static int client_main(char **argv)
{
	const char *sock = argv[2];
	int cmd = atoi(argv[3]), ack = atoi(argv[4]), rc;
	struct slab_cache_config cfg = { .size = 64, .node = SLAB_NODE_LOCAL };
	uint64_t *held[HELD];
	unsigned round = 0;
	slab_pool *pool;
	slab_cache *c;
	char ch;

	alarm(CHILD_ALARM);
	rc = slab_pool_connect(sock, &pool);
	if (rc) {
		fprintf(stderr, "client: slab_pool_connect: %s\n", slab_strerror(rc));
		return EX_CONNECT;
	}
	rc = slab_cache_create(pool, "proto", &cfg, &c);
	if (rc) {
		fprintf(stderr, "client: slab_cache_create(proto): %s\n", slab_strerror(rc));
		return EX_CREATE;
	}
	for (unsigned i = 0; i < HELD; i++) {
		held[i] = slab_alloc(c);
		if (!held[i])
			return EX_ALLOC;
		for (unsigned k = 0; k < 8; k++)
			held[i][k] = held_word(i, k);
	}
	if (write(ack, "R", 1) != 1)
		return EX_PIPE;
	for (;;) {
		ssize_t n = read(cmd, &ch, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n != 1)
			return EX_PIPE;
		for (unsigned i = 0; i < HELD; i++)
			for (unsigned k = 0; k < 8; k++)
				if (held[i][k] != held_word(i, k)) {
					fprintf(stderr, "client: held object %u changed\n", i);
					return EX_HELD;
				}
		if (ch == 'Q')
			break;
		rc = client_round(pool, round++);
		if (rc)
			return rc;
		/* The held cache works too: one more object in and out. */
		{
			void *o = slab_alloc(c);
			if (!o || slab_free(c, o))
				return EX_ALLOC;
		}
		if (write(ack, "K", 1) != 1)
			return EX_PIPE;
	}
	for (unsigned i = 0; i < HELD; i++) {
		rc = slab_free(c, held[i]);
		if (rc) {
			fprintf(stderr, "client: slab_free(held): %s\n", slab_strerror(rc));
			return EX_FREE;
		}
	}
	rc = slab_cache_close(c);
	if (rc) {
		fprintf(stderr, "client: slab_cache_close: %s\n", slab_strerror(rc));
		return EX_CLOSE;
	}
	slab_pool_disconnect(pool);
	return EX_OK;
}

/* ---- fixture: a daemon and the client process ------------------------------------------ */

static struct th_daemon daemon_;
static pid_t client_pid;
static int client_cmd = -1, client_ack = -1;

static int teardown(void **state);

static int wait_ack(char want)
{
	struct pollfd pfd = { .fd = client_ack, .events = POLLIN };
	char ch;

	if (poll(&pfd, 1, ACK_MS) != 1 || read(client_ack, &ch, 1) != 1 || ch != want)
		return -1;
	return 0;
}

static int setup(void **state)
{
	int cmd[2], ack[2];
	char a_cmd[16], a_ack[16];

	(void)state;
	if (th_start(&daemon_, NULL))
		return -1;
	if (pipe2(cmd, O_CLOEXEC) || pipe2(ack, O_CLOEXEC)) {
		teardown(state);
		return -1;
	}
	snprintf(a_cmd, sizeof(a_cmd), "%d", cmd[0]);
	snprintf(a_ack, sizeof(a_ack), "%d", ack[1]);
	client_pid = th_spawn_self((const char *const[]){ "--client", daemon_.socket, a_cmd, a_ack,
							  NULL },
				   (const int[]){ cmd[0], ack[1] }, 2);
	close(cmd[0]);
	close(ack[1]);
	client_cmd = cmd[1];
	client_ack = ack[0];
	if (client_pid <= 0 || wait_ack('R')) {
		fprintf(stderr, "the libslab client process did not start (exit %d)\n",
			client_pid > 0 ? th_wait_child(client_pid, 5) : -1);
		teardown(state); /* cmocka skips the teardown of a failed setup */
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	client_pid = 0;
	if (client_cmd >= 0)
		close(client_cmd);
	if (client_ack >= 0)
		close(client_ack);
	client_cmd = client_ack = -1;
	th_teardown(&daemon_);
	return 0;
}

/* The daemon still serves everyone: a fresh connection gets a correct cache.list (with
 * the client's cache), and the client process completes a round. */
static void check_alive(const char *after)
{
	json_t *r = th_request(&daemon_, "{\"id\":77,\"cmd\":\"cache.list\"}"), *c;
	size_t i;
	int found = 0;

	if (!r)
		fail_msg("after %s: no reply from slabd", after);
	th_assert_ok(r, after);
	assert_int_equal(th_jint(r, "id"), 77);
	json_array_foreach(json_object_get(r, "caches"), i, c)
		found += !strcmp(th_jstr(c, "name"), "proto");
	json_decref(r);
	if (found != 1)
		fail_msg("after %s: cache 'proto' listed %d times", after, found);
	if (write(client_cmd, "P", 1) != 1 || wait_ack('K'))
		fail_msg("after %s: the libslab client failed (exit %d)", after,
			 th_wait_child(client_pid, 5));
}

/* Quit the client (exit 0), stop the daemon (exit 0, socket removed).  A test that said
 * hello as a client on a raw connection of its own is, while it lives, a client whose
 * connection broke: its slot waits for it (a ghost), so slabd leaves the socket for the
 * next slabd to wait for it (server_close_all, the adoption window). */
static void finish(bool test_holds_a_slot)
{
	assert_int_equal(write(client_cmd, "Q", 1), 1);
	assert_int_equal(th_wait_child(client_pid, 30), 0);
	client_pid = 0;
	if (!test_holds_a_slot) {
		TH_STOP_CLEAN(&daemon_);
		return;
	}
	assert_int_equal(th_stop(&daemon_), 0);
	assert_true(daemon_.socket_left);
}

static json_t *conn_req(int fd, const char *line)
{
	json_t *r = th_conn_request(fd, line);

	if (!r)
		fail_msg("no reply to %.100s", line);
	return r;
}

static void expect_error(int fd, const char *line, const char *code, json_t *id)
{
	json_t *r = conn_req(fd, line);

	th_assert_error(r, code, line);
	if (!json_equal(json_object_get(r, "id"), id)) {
		char *s = json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY);
		fail_msg("reply to %.100s: wrong id: %s", line, s ? s : "?");
	}
	json_decref(r);
	json_decref(id);
}

static void expect_ok(int fd, const char *line, long long id)
{
	json_t *r = conn_req(fd, line);

	th_assert_ok(r, line);
	assert_int_equal(th_jint(r, "id"), id);
	json_decref(r);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_malformed_json(void **state)
{
	int fd = th_connect(&daemon_);
	json_t *r;

	(void)state;
	assert_true(fd >= 0);
	expect_error(fd, "{bad json", "EBADMSG", json_null());
	expect_ok(fd, "{\"id\":2,\"cmd\":\"cache.list\"}", 2);
	expect_error(fd, "[1,2,3]", "EBADMSG", json_null());
	expect_error(fd, "\"just a string\"", "EBADMSG", json_null());
	expect_error(fd, "{\"id\":3,\"cmd\":\"cache.list\"", "EBADMSG", json_null());
	expect_error(fd, "{\"id\":4,\"cmd\":\"cache.list\",\"cmd\":\"cache.list\"}", "EBADMSG",
		     json_null());
	expect_error(fd, "{\"id\":5}", "EINVAL", json_integer(5));
	expect_error(fd, "{\"id\":6,\"cmd\":42}", "EINVAL", json_integer(6));
	expect_error(fd, "{\"id\":7,\"cmd\":null}", "EINVAL", json_integer(7));
	expect_error(fd, "{\"id\":8,\"cmd\":\"cache.stats\",\"name\":17}", "EINVAL", json_integer(8));
	expect_error(fd, "\x01\x02\x03", "EBADMSG", json_null());
	/* Blank lines get no reply; CR LF is accepted. */
	expect_ok(fd, "\n\n  \n{\"id\":9,\"cmd\":\"cache.list\"}\r", 9);
	/* Pipelined requests are answered in order. */
	expect_ok(fd, "{\"id\":10,\"cmd\":\"cache.list\"}\n{\"id\":11,\"cmd\":\"arena.stats\"}", 10);
	r = th_conn_request(fd, "{\"id\":12,\"cmd\":\"cache.list\"}");
	assert_non_null(r);
	assert_int_equal(th_jint(r, "id"), 11);
	json_decref(r);
	r = th_conn_request(fd, "{\"id\":13,\"cmd\":\"arena.stats\"}");
	assert_non_null(r);
	assert_int_equal(th_jint(r, "id"), 12);
	json_decref(r);
	r = th_conn_request(fd, "{\"id\":14,\"cmd\":\"cache.list\"}");
	assert_non_null(r);
	assert_int_equal(th_jint(r, "id"), 13);
	assert_int_equal(th_jint(r, "size"), 64 << 20);
	json_decref(r);
	r = th_conn_read(fd);
	assert_non_null(r);
	assert_int_equal(th_jint(r, "id"), 14);
	json_decref(r);
	/* A long non-ASCII command name: the message is still a (valid UTF-8) string. */
	expect_error(fd, "{\"id\":15,\"cmd\":\"x\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
		     "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
		     "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
		     "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\"}", "ENOSYS", json_integer(15));
	expect_error(fd, "{\"id\":16,\"cmd\":\"cache.stats\",\"name\":\"caf\u00e9\"}", "EINVAL",
		     json_integer(16));
	/* Any JSON value is echoed as the id. */
	expect_error(fd, "{\"id\":{\"a\":[1]},\"cmd\":\"nope\"}", "ENOSYS",
		     json_pack("{s:[i]}", "a", 1));
	close(fd);
	check_alive("malformed JSON");
	finish(false);
}

static void test_unknown_and_state(void **state)
{
	int fd = th_connect(&daemon_);
	json_t *r;

	(void)state;
	assert_true(fd >= 0);
	expect_error(fd, "{\"id\":\"abc\",\"cmd\":\"nope\"}", "ENOSYS", json_string("abc"));
	expect_error(fd, "{\"id\":1,\"cmd\":\"cache.LIST\"}", "ENOSYS", json_integer(1));
	expect_error(fd, "{\"id\":2,\"cmd\":\"\"}", "ENOSYS", json_integer(2));
	expect_ok(fd, "{\"id\":3,\"cmd\":\"cache.list\"}", 3);
	/* Commands for clients need a client hello. */
	expect_error(fd, "{\"id\":4,\"cmd\":\"cache.open\",\"name\":\"proto\"}", "EPERM",
		     json_integer(4));
	expect_error(fd, "{\"id\":5,\"cmd\":\"slab.grant\",\"cache\":0}", "EPERM", json_integer(5));
	expect_error(fd, "{\"id\":6,\"cmd\":\"hello\",\"role\":\"admin\"}", "EINVAL",
		     json_integer(6));
	expect_error(fd, "{\"id\":7,\"cmd\":\"hello\",\"version\":999}", "EPROTO", json_integer(7));
	r = conn_req(fd, "{\"id\":8,\"cmd\":\"hello\",\"role\":\"monitor\"}");
	th_assert_ok(r, "hello monitor");
	assert_string_equal(th_jstr(r, "role"), "monitor");
	assert_int_equal(th_jint(r, "arena_size"), 64 << 20);
	json_decref(r);
	expect_error(fd, "{\"id\":9,\"cmd\":\"hello\",\"role\":\"monitor\"}", "EPROTO",
		     json_integer(9));
	expect_error(fd, "{\"id\":10,\"cmd\":\"cache.open\",\"name\":\"proto\"}", "EPERM",
		     json_integer(10));
	expect_error(fd, "{\"id\":11,\"cmd\":\"area.grow\"}", "EPERM", json_integer(11));
	expect_ok(fd, "{\"id\":12,\"cmd\":\"clients.list\"}", 12);
	close(fd);
	check_alive("unknown commands");

	/* A client connection asking for slabs of a cache it has not opened, or of no cache. */
	fd = th_connect(&daemon_);
	assert_true(fd >= 0);
	r = conn_req(fd, "{\"id\":1,\"cmd\":\"hello\",\"role\":\"client\"}");
	th_assert_ok(r, "hello client");
	json_decref(r);
	expect_error(fd, "{\"id\":2,\"cmd\":\"slab.grant\",\"cache\":100000}", "EINVAL",
		     json_integer(2));
	expect_error(fd, "{\"id\":3,\"cmd\":\"slab.grant\",\"cache\":0,\"nr\":1}", "EPERM",
		     json_integer(3));
	expect_error(fd, "{\"id\":4,\"cmd\":\"cache.close\",\"name\":\"proto\"}", "EINVAL",
		     json_integer(4));
	close(fd);
	check_alive("a client asking for what it does not hold");

	/* Pipelined around a client hello (whose reply carries the arena fd): every line
	 * is answered, in order, the ones after the hello included. */
	fd = th_connect(&daemon_);
	assert_true(fd >= 0);
	r = conn_req(fd, "{\"id\":1,\"cmd\":\"arena.stats\"}\n"
		     "{\"id\":2,\"cmd\":\"hello\",\"role\":\"client\"}\n"
		     "{\"id\":3,\"cmd\":\"cache.list\"}\n{\"id\":4,\"cmd\":\"clients.list\"}");
	th_assert_ok(r, "pipelined arena.stats");
	assert_int_equal(th_jint(r, "id"), 1);
	json_decref(r);
	for (int id = 2; id <= 4; id++) {
		r = th_conn_read(fd);
		if (!r)
			fail_msg("pipelined request %d after a client hello got no reply", id);
		th_assert_ok(r, "pipelined request");
		assert_int_equal(th_jint(r, "id"), id);
		if (id == 2)
			assert_string_equal(th_jstr(r, "role"), "client");
		json_decref(r);
	}
	close(fd);
	check_alive("requests pipelined around a client hello");
	finish(true);
}

static void test_oversize_line(void **state)
{
	size_t big = 70000, n;
	char *line = malloc(4 * MAX_LINE), reply[4096];
	bool eof;
	ssize_t got;
	json_t *r;

	(void)state;
	assert_non_null(line);

	/* Just under the limit: a valid request is served. */
	n = (size_t)snprintf(line, 64, "{\"id\":1,\"cmd\":\"cache.list\",\"pad\":\"");
	memset(line + n, 'p', MAX_LINE - 100 - n);
	n = MAX_LINE - 100;
	n += (size_t)snprintf(line + n, 64, "\"}");
	assert_true(n < MAX_LINE);
	r = th_request(&daemon_, line);
	th_assert_ok(r, "a 65436-byte request");
	json_decref(r);

	/* Over it, with a newline: EMSGSIZE or the connection closed. */
	memset(line, 'x', big);
	line[big] = '\n';
	got = th_raw(&daemon_, line, big + 1, reply, sizeof(reply), 1000, &eof);
	assert_true(got >= 0);
	if (got > 0 && !strstr(reply, "\"EMSGSIZE\""))
		fail_msg("reply to an oversize line: %s", reply);
	assert_true(got > 0 || eof);
	check_alive("an oversize line");

	/* Over it, no newline at all (a peer streaming one endless line). */
	memset(line, '{', 4 * MAX_LINE);
	got = th_raw(&daemon_, line, 4 * MAX_LINE, reply, sizeof(reply), 1000, &eof);
	assert_true(got >= 0);
	if (got > 0 && !strstr(reply, "\"EMSGSIZE\""))
		fail_msg("reply to an endless line: %s", reply);
	assert_true(got > 0 || eof);
	check_alive("an endless line");
	free(line);
	finish(false);
}

/* Every complete reply line must be a JSON object with ok:false, an error and a message. */
static void check_garbage_replies(const char *reply, unsigned round)
{
	const char *p = reply, *nl;

	while ((nl = strchr(p, '\n'))) {
		json_error_t jerr;
		json_t *r = json_loadb(p, (size_t)(nl - p), 0, &jerr);

		if (!r || !json_is_false(json_object_get(r, "ok")) ||
		    !json_is_string(json_object_get(r, "error")) ||
		    !json_is_string(json_object_get(r, "message")))
			fail_msg("garbage round %u: bad reply line: %.*s", round, (int)(nl - p), p);
		json_decref(r);
		p = nl + 1;
	}
}

static void test_garbage(void **state)
{
	static const char jsonish[] = "{}[]\":,\n\0\\ab 1-e.\x80\xff";
	static char buf[16384], reply[65536];
	uint64_t seed;
	bool eof;

	(void)state;
	for (unsigned round = 0; round < GARBAGE_ROUNDS; round++) {
		size_t len = 0, n;
		ssize_t got;
		char what[64];

		seed = 0x5eed0000u + round;
		th_rand(&seed);
		/* Odd rounds say hello as a client first: the garbage then ends a client
		 * connection, which the daemon must reclaim. */
		if (round & 1)
			len = (size_t)snprintf(buf, sizeof(buf),
					       "{\"id\":1,\"cmd\":\"hello\",\"role\":\"client\"}\n");
		n = 2048 + th_rand(&seed) % 6144;
		for (size_t i = 0; i < n; i++) {
			uint64_t x = th_rand(&seed);
			/* Half the rounds are raw bytes, half lean on JSON's punctuation. */
			buf[len++] = round & 2 ? jsonish[x % (sizeof(jsonish) - 1)] : (char)(x >> 56);
		}
		got = th_raw(&daemon_, buf, len, reply, sizeof(reply), 300, &eof);
		assert_true(got >= 0);
		if (round & 1) {
			/* The hello reply comes first. */
			if (strncmp(reply, "{\"id\":1,\"ok\":true,", 18) || !strchr(reply, '\n'))
				fail_msg("garbage round %u: hello reply: %.200s", round, reply);
			check_garbage_replies(strchr(reply, '\n') + 1, round);
		} else {
			check_garbage_replies(reply, round);
		}
		snprintf(what, sizeof(what), "garbage round %u (%zu bytes)", round, len);
		check_alive(what);
	}
	finish(true);
}

/* A peer that sends requests and never reads the replies must not stall the daemon. */
static void test_no_reader(void **state)
{
	static const char req[] = "{\"id\":1,\"cmd\":\"arena.stats\"}\n";
	int fd = th_connect(&daemon_);
	size_t sent = 0;

	(void)state;
	assert_true(fd >= 0);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	/* Up to 8 MiB of replies requested; stop when the daemon stops reading. */
	for (int i = 0; i < 20000; i++) {
		ssize_t n = send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
		if (n != (ssize_t)sizeof(req) - 1)
			break;
		sent++;
	}
	assert_true(sent > 0);
	check_alive("a peer that does not read");
	close(fd);
	check_alive("closing the peer that did not read");
	finish(false);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_malformed_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_and_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversize_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_reader, setup, teardown),
	};

	if (argc == 5 && !strcmp(argv[1], "--client"))
		return client_main(argv);
	if (argc > 1) {
		fprintf(stderr, "usage: %s [--client SOCKET CMDFD ACKFD]\n", argv[0]);
		return EX_USAGE;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
