# slabd - plain Makefile.  Everything lands in $(BUILD) (default build/).
#
#   make                 build the daemon, the client library and the tools
#   make test            install missing Debian packages, build, run every test
#   make run             install missing packages, build, start slabd (embedded defaults)
#   make check-asan      every test under AddressSanitizer + UBSan (build/asan)
#   make check-valgrind  every test binary and every slabd they start under valgrind
#                        memcheck, zero errors and no definite leak required
#   make fuzz            each libFuzzer target for FUZZ_TIME seconds (default 60)
#   make install PREFIX=/usr/local

CC       ?= gcc
BUILD    ?= build
PREFIX   ?= /usr/local
SANITIZE ?=
VERSION  := 0.1.0

PKGS     := libevent jansson
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS += -D_GNU_SOURCE -Ishm
# gnu11: libslab's fast path loads its TLS magazine through __seg_fs (libclient/internal.h)
ALL_CFLAGS = -std=gnu11 $(CFLAGS) $(WARN) -fPIC -pthread $(SANITIZE)
LDLIBS_BASE := -pthread

OBJ := $(BUILD)/obj

SHM_SRC  := $(wildcard shm/*.c)
SHM_OBJ  := $(SHM_SRC:%.c=$(OBJ)/%.o)
SHM_LIB  := $(BUILD)/lib/libsm.a

DAEMON_SRC := $(wildcard daemon/*.c) libclient/sockpath.c
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(OBJ)/%.o)
SLABD      := $(BUILD)/bin/slabd

CLIENT_SRC := $(filter-out libclient/sockpath.c,$(wildcard libclient/*.c))
CLIENT_OBJ := $(CLIENT_SRC:%.c=$(OBJ)/%.o) $(OBJ)/libclient/sockpath.o
SO_VERSION := 1
LIBSLAB_SO := $(BUILD)/lib/libslab.so.$(SO_VERSION)
LIBSLAB_A  := $(BUILD)/lib/libslab.a

# Tools: slabctl, a pure client of the JSON protocol (jansson), sharing only the socket
# path rule and errno names (libclient/sockpath.c) with the rest.
TOOLS_SRC := $(wildcard tools/*.c) libclient/sockpath.c
TOOLS_OBJ := $(TOOLS_SRC:%.c=$(OBJ)/%.o)
SLABCTL   := $(BUILD)/bin/slabctl

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

# Integration tests: real slabd + libslab (static), harness.c starts/stops the daemon.
INT_SRC  := $(wildcard tests/integration/test_*.c)
INT_BIN  := $(INT_SRC:tests/integration/%.c=$(BUILD)/tests/%)
INT_HELPERS := $(filter-out $(INT_SRC),$(wildcard tests/integration/*.c))
INT_HELPER_OBJ := $(INT_HELPERS:%.c=$(OBJ)/%.o)

.PHONY: all test run check-asan check-valgrind check-tsan clean deps install soak
all: $(SHM_LIB) $(SLABD) $(SLABCTL) $(LIBSLAB_SO) $(LIBSLAB_A) $(BUILD)/lib/pkgconfig/slab.pc $(UNIT_BIN) $(INT_BIN)

deps:
	@tests/deps.sh

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(SHM_LIB): $(SHM_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(OBJ)/daemon/%.o: CPPFLAGS += -Ilibclient $(shell pkg-config --cflags libevent jansson)

$(SLABD): $(DAEMON_OBJ) $(SHM_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(shell pkg-config --libs libevent jansson) -lnuma $(LDLIBS_BASE)

$(OBJ)/tools/%.o: CPPFLAGS += -Ilibclient $(shell pkg-config --cflags jansson)

$(SLABCTL): $(TOOLS_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(shell pkg-config --libs jansson) -lm $(LDLIBS_BASE)

$(OBJ)/libclient/%.o: CPPFLAGS += -Ilibclient -Ilibclient/include $(shell pkg-config --cflags jansson)

$(LIBSLAB_SO): $(CLIENT_OBJ) $(SHM_OBJ) libclient/libslab.map
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,libslab.so.$(SO_VERSION) \
		-Wl,--version-script=libclient/libslab.map -Wl,-z,defs -o $@ \
		$(CLIENT_OBJ) $(SHM_OBJ) $(shell pkg-config --libs jansson) $(LDLIBS_BASE)
	ln -sf libslab.so.$(SO_VERSION) $(BUILD)/lib/libslab.so

$(LIBSLAB_A): $(CLIENT_OBJ) $(SHM_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# For building against the build tree: PKG_CONFIG_PATH=build/lib/pkgconfig.
$(BUILD)/lib/pkgconfig/slab.pc: libclient/slab.pc.in Makefile
	@mkdir -p $(dir $@)
	sed -e 's|^prefix=.*|prefix=$(abspath $(BUILD))|' -e 's|^includedir=.*|includedir=$(abspath libclient/include)|' \
		-e 's|@VERSION@|$(VERSION)|' $< > $@

$(BUILD)/tests/%: $(OBJ)/tests/unit/%.o $(OBJ)/tests/unit/testutil.o $(SHM_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(shell pkg-config --libs cmocka) $(LDLIBS_BASE)

$(OBJ)/tests/unit/testutil.o: tests/unit/testutil.c

$(OBJ)/tests/integration/%.o: CPPFLAGS += -Ilibclient -Ilibclient/include -Itests/integration $(shell pkg-config --cflags jansson)

$(INT_BIN): $(BUILD)/tests/%: $(OBJ)/tests/integration/%.o $(INT_HELPER_OBJ) $(LIBSLAB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(shell pkg-config --libs jansson cmocka) $(LDLIBS_BASE)

test: deps
	@$(MAKE) --no-print-directory all
	@tests/run-tests.sh $(BUILD)
	@$(MAKE) --no-print-directory check-tsan

# The threaded tests again under ThreadSanitizer (libslab and the engine instrumented).
# Here and in check-asan SLABD_WRAPPER is emptied: valgrind cannot run a sanitizer build.
TSAN_TESTS ?= test_threads
check-tsan: deps
	@$(MAKE) --no-print-directory BUILD=build/tsan CC=gcc SANITIZE="-fsanitize=thread" \
		$(addprefix build/tsan/tests/,$(TSAN_TESTS)) build/tsan/bin/slabd
	@for t in $(TSAN_TESTS); do \
		SLABD_WRAPPER= TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" SLAB_TEST_SCALE=$${SLAB_TSAN_SCALE:-1} \
			timeout 600 build/tsan/tests/$$t > build/tsan/tests/$$t.log 2>&1 \
			&& echo "PASS $$t (ThreadSanitizer)" \
			|| { echo "FAIL $$t (ThreadSanitizer); see build/tsan/tests/$$t.log"; tail -40 build/tsan/tests/$$t.log; exit 1; }; \
	done

ASAN_SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
check-asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan CC=gcc SANITIZE="$(ASAN_SANITIZE)" all
	@SLABD_WRAPPER= ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		tests/run-tests.sh build/asan

# Two wrappers: TEST_WRAPPER runs each test binary under memcheck (--trace-children=no: not
# the processes it starts), SLABD_WRAPPER each slabd the tests start (the integration
# harness, tests/cli/test_slabctl.sh), whose valgrind errors fail the test that ran it
# (exit 99 at its stop, or a report in the log of a SIGKILLed one; harness.h).  The
# helper processes the tests fork (libslab clients) run natively.  The sanitizer scripts
# (test_asan_daemon, test_fuzz_smoke) are skipped: their ASan builds cannot run under
# valgrind, and make test runs them.
#
# valgrind 3.19 (Debian 12's) does not know pidfd_open (syscall 434) and fails it with
# ENOSYS, which leaves slabd without its watch on client processes (no ghost slots, no
# death notices; the tests of those fail).  slabd gets it from a native helper instead:
# env LD_PRELOAD=pidfd_preload.so (tests/valgrind/pidfd_preload.c says how).
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
VG_DIR   := $(BUILD)/valgrind
VG_PIDFD := $(VG_DIR)/pidfd_preload.so $(VG_DIR)/pidfd_helper
.PHONY: valgrind-helpers
valgrind-helpers: $(VG_PIDFD)
	@:

check-valgrind: deps
	@$(MAKE) --no-print-directory all valgrind-helpers
	@TEST_WRAPPER="$(VALGRIND) --trace-children=no" \
		SLABD_WRAPPER="env LD_PRELOAD=$(abspath $(VG_DIR))/pidfd_preload.so $(VALGRIND)" \
		SLAB_TEST_SCALE=10 tests/run-tests.sh $(BUILD)

$(VG_DIR)/pidfd_preload.so: tests/valgrind/pidfd_preload.c tests/valgrind/pidfd_proto.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -shared -o $@ $< -ldl

$(VG_DIR)/pidfd_helper: tests/valgrind/pidfd_helper.c tests/valgrind/pidfd_proto.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -o $@ $<

# ---- fuzzing (libFuzzer: clang, libclang-rt-14-dev) -------------------------------------
#   make fuzz [FUZZ_TIME=60]     each target for FUZZ_TIME seconds (figures in build/fuzz/)
#   make fuzz-smoke [FUZZ_RUNS]  each target for FUZZ_RUNS executions (make test does this)
#   make asan-slabd              build/asan/bin/slabd alone (tests/cli/test_asan_daemon.sh)
# The targets (tests/fuzz/fuzz_*.c) link the daemon's objects without main.c, or the
# engine alone, all instrumented; seeds come from tests/fuzz/corpus/<name>/, and what the
# fuzzer learns goes to build/fuzz/corpus/<name>/ (never into the source tree).
FUZZ_TIME    ?= 60
FUZZ_RUNS    ?= 20000
FUZZ_BUILD   := build/fuzz
FUZZ_TARGETS := fuzz_protocol fuzz_free
FUZZ_SANITIZE := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer
FUZZ_DAEMON_OBJ := $(filter-out $(OBJ)/daemon/main.o,$(DAEMON_OBJ))

$(OBJ)/tests/fuzz/%.o: CPPFLAGS += -Idaemon -Ilibclient $(shell pkg-config --cflags libevent jansson)

$(BUILD)/fuzz/fuzz_protocol: $(OBJ)/tests/fuzz/fuzz_protocol.o $(FUZZ_DAEMON_OBJ) $(SHM_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(shell pkg-config --libs libevent jansson) \
		-lnuma $(LDLIBS_BASE)

$(BUILD)/fuzz/fuzz_free: $(OBJ)/tests/fuzz/fuzz_free.o $(SHM_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS_BASE)

.PHONY: fuzz fuzz-build fuzz-smoke asan-slabd
fuzz-build:
	@command -v clang >/dev/null 2>&1 || { echo "fuzz: clang is not installed" \
		"(apt-get install clang libclang-rt-14-dev)"; exit 1; }
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang SANITIZE="$(FUZZ_SANITIZE)" \
		$(addprefix $(FUZZ_BUILD)/fuzz/,$(FUZZ_TARGETS))

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@tests/fuzz/run.sh time $(FUZZ_TIME) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	@tests/fuzz/run.sh runs $(FUZZ_RUNS) $(FUZZ_TARGETS)

asan-slabd:
	@$(MAKE) --no-print-directory BUILD=build/asan CC=gcc SANITIZE="$(ASAN_SANITIZE)" \
		build/asan/bin/slabd

# The embedded default: a 256 MiB arena and a socket under the build folder.
RUN_SOCKET ?= $(abspath $(BUILD))/run/slabd.sock
run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p $(dir $(RUN_SOCKET))
	@echo "slabd: starting with a 256 MiB arena on $(RUN_SOCKET) (Ctrl-C stops it)"
	@echo "slabd: reach it with   export SLABD_SOCKET=$(RUN_SOCKET)"
	@echo "slabd:                 $(BUILD)/bin/slabctl stats   (or socat - UNIX-CONNECT:$(RUN_SOCKET))"
	exec $(SLABD) --socket $(RUN_SOCKET) --arena-size 256M

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(SLABD) $(wildcard $(BUILD)/bin/slabctl) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 $(LIBSLAB_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libslab.so.$(SO_VERSION) $(DESTDIR)$(PREFIX)/lib/libslab.so
	install -m 644 $(LIBSLAB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 libclient/include/slab.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' libclient/slab.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/slab.pc
	if [ -f tools/slabctl.1 ]; then install -d $(DESTDIR)$(PREFIX)/share/man/man1 && \
		install -m 644 tools/slabctl.1 $(DESTDIR)$(PREFIX)/share/man/man1/; fi

# ---- crash tests: libslab with test points (shm/testpoint.h), only for tests/crash ------
# SM_TEST_POINT("name") stops the process (SIGSTOP) where $SLAB_TEST_STOP names it, so a
# test can SIGKILL it inside a slow-path step.  Never part of the installed library.
HOOKS_OBJ  := $(BUILD)/obj-hooks
HOOKS_LIB  := $(BUILD)/lib/libslab-hooks.a
HOOKS_SRCS := $(SHM_SRC) $(CLIENT_SRC) libclient/sockpath.c
CRASH_SRC  := $(wildcard tests/crash/test_*.c)
CRASH_BIN  := $(CRASH_SRC:tests/crash/%.c=$(BUILD)/tests/%)

$(HOOKS_OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DSLAB_TEST_HOOKS -Ilibclient -Ilibclient/include \
		$(shell pkg-config --cflags jansson) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(HOOKS_LIB): $(HOOKS_SRCS:%.c=$(HOOKS_OBJ)/%.o)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(OBJ)/tests/crash/%.o: CPPFLAGS += -Ilibclient -Ilibclient/include -Itests/integration $(shell pkg-config --cflags jansson)

$(CRASH_BIN): $(BUILD)/tests/%: $(OBJ)/tests/crash/%.o $(INT_HELPER_OBJ) $(HOOKS_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(shell pkg-config --libs jansson cmocka) $(LDLIBS_BASE)

all: $(CRASH_BIN)

# The long crash storm: 5,000 kills (make test runs 200).
soak: deps
	@$(MAKE) --no-print-directory all
	SLAB_STORM_KILLS=5000 TH_TIMEOUT=3600 $(BUILD)/tests/test_storm

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ==== benchmarks (tests/bench/; see tests/bench/README.md) ==============================
#   make bench        install missing peers, build, start a slabd, run every workload
#   make bench-instr  callgrind instructions per alloc+free pair, slabd and each peer
# One program per workload (build/bench/<w>: the driver, with slabd and glibc malloc in
# it) plus one binary per peer allocator (build/bench/peers/<w>.<peer>), linked so that
# peer's malloc/free interposes; the driver runs them all, interleaved.  Kept out of
# build/tests/ on purpose: tests/run-tests.sh runs everything there.
BENCH_DIR       := $(BUILD)/bench
BENCH_OBJ       := $(OBJ)/tests/bench
BENCH_WORKLOADS := hot batch prodcons scale cold sizes remote memory instr
BENCH_DRIVERS   := $(BENCH_WORKLOADS:%=$(BENCH_DIR)/%)
BENCH_MALLOC_W  := hot batch prodcons scale cold sizes memory instr
BENCH_DPDK_W    := hot batch prodcons scale cold instr
BENCH_MALLOCS   := jemalloc tcmalloc mimalloc
BENCH_PEER_BINS := $(foreach w,$(BENCH_MALLOC_W),$(foreach p,$(BENCH_MALLOCS),$(BENCH_DIR)/peers/$(w).$(p))) \
		   $(foreach w,$(BENCH_DPDK_W),$(BENCH_DIR)/peers/$(w).dpdk) \
		   $(BENCH_DIR)/peers/hot.slabd-so $(BENCH_DIR)/peers/instr.slabd-so \
		   $(BENCH_DIR)/peers/prodcons.boost $(BENCH_DIR)/peers/prodcons.iceoryx
BENCH_CFLAGS    = $(CPPFLAGS) -Itests/bench -Ilibclient/include $(ALL_CFLAGS)
BENCH_LIBS      := -ldl -lm -pthread
BENCH_DPDK_CFLAGS = $(patsubst -I%,-isystem %,$(shell pkg-config --cflags libdpdk 2>/dev/null))
BENCH_ICEORYX_INC := $(firstword $(wildcard /usr/include/iceoryx/v*))
lib_jemalloc := -ljemalloc
lib_tcmalloc := -ltcmalloc_minimal
lib_mimalloc := -lmimalloc

.PHONY: bench bench-instr bench-build bench-peers bench-deps
bench-deps:
	@tests/bench/deps.sh

bench-build: $(BENCH_DRIVERS) $(BENCH_DIR)/hostcheck $(SLABD) $(SLABCTL)

# What the host gives the two cpus (run.sh prints it around each workload).
$(BENCH_DIR)/hostcheck: tests/bench/hostcheck.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $< -o $@ -pthread

# Peers that cannot be built (a package failed to install) are skipped by the drivers,
# which say so; hence -k and no failure here.
bench-peers:
	@$(MAKE) --no-print-directory -k $(BENCH_PEER_BINS) || \
		echo "bench: some peer binaries did not build; their rows will say SKIPPED"

bench: deps bench-deps
	@$(MAKE) --no-print-directory bench-build
	@$(MAKE) --no-print-directory bench-peers
	@tests/bench/run.sh $(BUILD)

bench-instr: deps bench-deps
	@$(MAKE) --no-print-directory bench-build
	@$(MAKE) --no-print-directory bench-peers
	@$(BENCH_DIR)/instr $(BENCH_INSTR_ARGS)

$(BENCH_OBJ)/bench.o: tests/bench/bench.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -MMD -MP -c $< -o $@

$(BENCH_OBJ)/bench_daemon.o: tests/bench/bench_daemon.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(shell pkg-config --cflags jansson) -MMD -MP -c $< -o $@

# Drivers: slabd (libslab.a) + glibc malloc.
$(BENCH_OBJ)/%.drv.o: tests/bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -DBA_HAVE_SLABD -DBA_HAVE_MALLOC -MMD -MP -c $< -o $@

$(BENCH_DRIVERS): $(BENCH_DIR)/%: $(BENCH_OBJ)/%.drv.o $(BENCH_OBJ)/bench.o $(BENCH_OBJ)/bench_daemon.o $(LIBSLAB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(shell pkg-config --libs jansson) -lnuma $(BENCH_LIBS)

# malloc peers: one object, linked three ways (-l<peer> comes before libc).
$(BENCH_OBJ)/%.malloc.o: tests/bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -DBA_HAVE_MALLOC -MMD -MP -c $< -o $@

define bench_malloc_peer
$(BENCH_DIR)/peers/%.$(1): $(BENCH_OBJ)/%.malloc.o $(BENCH_OBJ)/bench.o
	@mkdir -p $$(dir $$@)
	$(CC) $(ALL_CFLAGS) -o $$@ $$^ $(lib_$(1)) $(BENCH_LIBS)
endef
$(foreach p,$(BENCH_MALLOCS),$(eval $(call bench_malloc_peer,$(p))))

$(BENCH_OBJ)/%.dpdk.o: tests/bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(BENCH_DPDK_CFLAGS) -DBA_HAVE_DPDK -MMD -MP -c $< -o $@

$(BENCH_DIR)/peers/%.dpdk: $(BENCH_OBJ)/%.dpdk.o $(BENCH_OBJ)/bench.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(shell pkg-config --libs libdpdk) $(BENCH_LIBS)

# slabd through libslab.so (PLT calls), as an application built with pkg-config has it.
$(BENCH_OBJ)/%.so.o: tests/bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -DBA_HAVE_SLABD -MMD -MP -c $< -o $@

$(BENCH_DIR)/peers/%.slabd-so: $(BENCH_OBJ)/%.so.o $(BENCH_OBJ)/bench.o $(BENCH_OBJ)/bench_daemon.o $(LIBSLAB_SO)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter %.o,$^) -L$(BUILD)/lib -Wl,-rpath,$(abspath $(BUILD))/lib \
		-lslab $(shell pkg-config --libs jansson) $(BENCH_LIBS)

# Boost.Interprocess (C++, its own translation unit) and iceoryx (C binding): prodcons.
$(BENCH_OBJ)/bip.o: tests/bench/bip.cc
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 $(CFLAGS) -Wall -Wextra -Werror -fPIC -pthread -MMD -MP -c $< -o $@

$(BENCH_OBJ)/prodcons.boost.o: tests/bench/prodcons.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -DBA_HAVE_BOOST -MMD -MP -c $< -o $@

$(BENCH_DIR)/peers/prodcons.boost: $(BENCH_OBJ)/prodcons.boost.o $(BENCH_OBJ)/bip.o $(BENCH_OBJ)/bench.o
	@mkdir -p $(dir $@)
	$(CXX) -pthread -o $@ $^ -lrt $(BENCH_LIBS)

$(BENCH_OBJ)/prodcons.iceoryx.o: tests/bench/prodcons.c
	@mkdir -p $(dir $@)
	@test -n "$(BENCH_ICEORYX_INC)" || { echo "bench: iceoryx headers not installed"; exit 1; }
	$(CC) $(BENCH_CFLAGS) -isystem $(BENCH_ICEORYX_INC) -DBA_HAVE_ICEORYX -MMD -MP -c $< -o $@

$(BENCH_DIR)/peers/prodcons.iceoryx: $(BENCH_OBJ)/prodcons.iceoryx.o $(BENCH_OBJ)/bench.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ -liceoryx_binding_c $(BENCH_LIBS)
# ==== end of benchmarks ================================================================
