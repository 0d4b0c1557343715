# slabd - plain Makefile.  Everything lands in $(BUILD) (default build/).
#
#   make                 build the daemon, the client library and the tools
#   make test            install missing Debian packages, build, run every test
#   make run             install missing packages, build, start slabd (embedded defaults)
#   make check-asan      every test under AddressSanitizer + UBSan (build/asan)
#   make check-valgrind  every test under valgrind memcheck, zero errors required
#   make install PREFIX=/usr/local

CC       ?= gcc
BUILD    ?= build
PREFIX   ?= /usr/local
SANITIZE ?=
DEPS_OK  := $(BUILD)/.deps-ok

PKGS     := libevent jansson
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS += -D_GNU_SOURCE -Ishm
ALL_CFLAGS = -std=c11 $(CFLAGS) $(WARN) -fPIC -pthread $(SANITIZE)
LDLIBS_BASE := -pthread

OBJ := $(BUILD)/obj

SHM_SRC  := $(wildcard shm/*.c)
SHM_OBJ  := $(SHM_SRC:%.c=$(OBJ)/%.o)
SHM_LIB  := $(BUILD)/lib/libsm.a

DAEMON_SRC := $(wildcard daemon/*.c) libclient/sockpath.c
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(OBJ)/%.o)
SLABD      := $(BUILD)/bin/slabd

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all test run check-asan check-valgrind clean deps install
all: $(SHM_LIB) $(SLABD) $(UNIT_BIN)

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

$(BUILD)/tests/%: $(OBJ)/tests/unit/%.o $(OBJ)/tests/unit/testutil.o $(SHM_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(shell pkg-config --libs cmocka) $(LDLIBS_BASE)

$(OBJ)/tests/unit/testutil.o: tests/unit/testutil.c

test: deps
	@$(MAKE) --no-print-directory all
	@tests/run-tests.sh $(BUILD)

check-asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan CC=gcc \
		SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		tests/run-tests.sh build/asan

check-valgrind: deps
	@$(MAKE) --no-print-directory all
	@TEST_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --trace-children=no" \
		SLAB_TEST_SCALE=10 tests/run-tests.sh $(BUILD)

run: deps
	@echo "slabd: the daemon is not written yet (issue 3); 'make run' will start it" >&2; exit 1

clean:
	rm -rf build

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
