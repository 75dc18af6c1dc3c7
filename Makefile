# Makefile — tasker-orchestratord: build, test, install, database helpers.
# `make` builds bin/tasker-orchestratord; `make check` runs every test (unit, SQL, end to end)
# against a throwaway PostgreSQL; `make SANITIZE=1 …` does the same with ASan + UBSan.
# Quiet by default; `make V=1` shows the commands.

PREFIX     ?= /usr/local
DESTDIR    ?=
SBINDIR    ?= $(PREFIX)/sbin
BINDIR_INST?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/tasker-orchestratord
# systemd searches /usr/local/lib/systemd/system as well as /usr/lib/systemd/system.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
CC         ?= cc
PKGS       := libpq libevent jansson libconfuse libsystemd libcrypto yaml-0.1 librabbitmq
TEST_PKGS  := check

ifeq ($(SANITIZE),1)
VARIANT    := asan
SANFLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OUT        := bin/asan
else
VARIANT    := release
SANFLAGS   :=
OUT        := bin
endif
OBJDIR     := build/$(VARIANT)

# Recursive (=) on purpose: pkg-config runs only when a recipe needs it, i.e. after `deps`.
PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS    = $(shell pkg-config --libs $(PKGS))
TEST_CFLAGS = $(shell pkg-config --cflags $(TEST_PKGS))
TEST_LIBS   = $(shell pkg-config --libs $(TEST_PKGS))

WARN        := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
override CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) $(SANFLAGS) -Iinclude -I$(OBJDIR) $(CFLAGS)
override LDFLAGS := $(SANFLAGS) $(LDFLAGS)

ifeq ($(V),1)
Q :=
quiet = @:
else
Q := @
quiet = @printf '  %-6s %s\n'
endif

# One folder per program under src/ and one for what they share (DESIGN §14): src/common (config
# loader, connection, logging, names, states, API-key parsing), src/orchestratord, src/worker,
# src/ctl. Objects keep the folder: build/<variant>/<folder>/<name>.o.
COMMON_SRC  := $(wildcard src/common/*.c)
COMMON_OBJ  := $(patsubst src/%.c,$(OBJDIR)/%.o,$(COMMON_SRC))
WORKER_SRC  := $(wildcard src/worker/*.c)
DAEMON_SRC  := $(wildcard src/orchestratord/*.c)
DAEMON_OBJ  := $(patsubst src/%.c,$(OBJDIR)/%.o,$(DAEMON_SRC)) $(COMMON_OBJ) $(OBJDIR)/embedded_sql.o
WORKER_OBJ  := $(patsubst src/%.c,$(OBJDIR)/%.o,$(WORKER_SRC)) $(COMMON_OBJ)
# taskerctl: the operator CLI; an HTTP client (libcurl) that renders graphs (libgvc) and reads the
# daemon's configuration with the daemon's own loader (src/common/conf.c).
CTL_SRC     := $(wildcard src/ctl/*.c)
# The configuration loader and what it validates with: linked wherever a program reads the
# daemon's configuration (taskerctl's config validate|dump, the conf fuzz target).
CONF_UNITS  := common/conf common/log common/http_auth common/jwt_keys common/amqp_util
CTL_OBJ     := $(patsubst src/%.c,$(OBJDIR)/%.o,$(CTL_SRC)) $(patsubst %,$(OBJDIR)/%.o,$(CONF_UNITS)) \
               $(OBJDIR)/common/template_file.o $(OBJDIR)/common/template_check.o
CTL_PKGS    := libcurl libgvc jansson libconfuse yaml-0.1 libcrypto librabbitmq
CTL_CFLAGS   = $(shell pkg-config --cflags $(CTL_PKGS))
CTL_LIBS     = $(shell pkg-config --libs $(CTL_PKGS))
BINARIES    := $(OUT)/tasker-orchestratord $(if $(WORKER_SRC),$(OUT)/tasker-worker) $(if $(CTL_SRC),$(OUT)/taskerctl)
LIB_OBJ     := $(filter-out $(OBJDIR)/orchestratord/main.o,$(DAEMON_OBJ))
UNIT_SRC    := $(wildcard tests/unit/*.c)
UNIT_OBJ    := $(patsubst tests/unit/%.c,$(OBJDIR)/tests/%.o,$(UNIT_SRC))
SQL_FILES   := $(sort $(wildcard migrations/*.sql)) $(sort $(wildcard sql/*.sql))
TEST_TOOLS_SRC := $(wildcard tests/tools/*.c)
TEST_TOOLS  := $(patsubst tests/tools/%.c,$(OUT)/tests/%,$(TEST_TOOLS_SRC))

.PHONY: all deps check check-unit check-db check-config-coverage test-tools clean install sql-check demo bench \
        db-setup db-migrate db-reset db-check fuzz fuzz-smoke

all: $(BINARIES)

deps:
	@scripts/install-deps

$(OBJDIR)/%.o: src/%.c | deps
	@mkdir -p $(@D)
	$(quiet) CC $<
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c -o $@ $<

$(OBJDIR)/ctl/%.o: src/ctl/%.c | deps
	@mkdir -p $(@D)
	$(quiet) CC $<
	$(Q)$(CC) $(CFLAGS) $(CTL_CFLAGS) -MMD -MP -c -o $@ $<

# migrations/ and sql/ travel inside the binary (DESIGN §6 migrate).
$(OBJDIR)/embedded_sql.c: scripts/embed-sql $(SQL_FILES) | deps
	@mkdir -p $(@D)
	$(quiet) EMBED "$(words $(SQL_FILES)) SQL files"
	$(Q)scripts/embed-sql $(SQL_FILES) > $@.tmp && mv $@.tmp $@

$(OBJDIR)/embedded_sql.o: $(OBJDIR)/embedded_sql.c
	$(quiet) CC $<
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(OUT)/tasker-orchestratord: $(DAEMON_OBJ)
	@mkdir -p $(@D)
	$(quiet) LINK $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(OUT)/tasker-worker: $(WORKER_OBJ)
	@mkdir -p $(@D)
	$(quiet) LINK $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(OUT)/taskerctl: $(CTL_OBJ)
	@mkdir -p $(@D)
	$(quiet) LINK $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CTL_LIBS)

$(OBJDIR)/tests/%.o: tests/unit/%.c | deps
	@mkdir -p $(@D)
	$(quiet) CC $<
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) $(CTL_CFLAGS) $(TEST_CFLAGS) -MMD -MP -c -o $@ $<

$(OUT)/tests/check_unit: $(UNIT_OBJ) $(LIB_OBJ) $(OBJDIR)/worker/worker_util.o $(OBJDIR)/worker/worker_dynamic.o \
                         $(OBJDIR)/ctl/ctl_render.o
	@mkdir -p $(@D)
	$(quiet) LINK $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LIBS) $(PKG_LIBS) $(CTL_LIBS) -lm

# Test tools: one file each, libpq only (drivers for concurrency and crash tests).
$(OUT)/tests/%: tests/tools/%.c | deps
	@mkdir -p $(@D)
	$(quiet) CC $<
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LDFLAGS) $(PKG_LIBS) -lm

test-tools: $(TEST_TOOLS)

check-unit: $(OUT)/tests/check_unit
	$(quiet) TEST unit
	$(Q)CK_TAP_LOG_FILE_NAME=- $(OUT)/tests/check_unit

# Everything that needs PostgreSQL: a private sandbox under var/test-pg, started and stopped here.
check-db: all test-tools
	$(Q)BIN=$(OUT) tests/run-db-tests

# The SQL suite and part of the end-to-end suite on PostgreSQL 15, 16, 17 and 18 (not part of
# check: it fetches the servers once into var/pg-versions; tests/run-matrix, docs/testing.md).
.PHONY: check-matrix
check-matrix: all test-tools
	$(Q)BIN=$(OUT) tests/run-matrix

# The README's main command: a private PostgreSQL, the daemon, a worker, sample workflows, a summary.
demo: all
	$(Q)BIN=$(OUT) DEMO_BACKEND=$(BACKEND) scripts/demo

# Steps/s, latency, per-step overhead, commits per step and the pgbench ceiling, measured on a
# private PostgreSQL under ./var/bench (or $DATABASE_URL's server); docs/performance.md reads it.
# BACKEND=rabbitmq (demo and bench): messaging.backend = rabbitmq against a private broker.
bench: all
	$(Q)BIN=$(OUT) BENCH_BACKEND=$(BACKEND) bench/run

# Prepare every daemon statement against a freshly migrated sandbox database.
sql-check: all
	$(Q)BIN=$(OUT) ONLY=sql_check tests/run-db-tests

# Every config key is in etc/ and docs/configuration.md, and nothing else is.
check-config-coverage:
	$(quiet) TEST config-coverage
	$(Q)scripts/check-config-coverage

check: check-unit check-config-coverage fuzz-smoke check-db
	@echo "make check: all tests passed ($$(cat var/test-skips 2>/dev/null | wc -l) skipped)"

# The container image built and run with podman (tests/container/run, docs/testing.md): not part of
# `make check`, since its first run downloads a Debian base system. Needs root, podman, podman-compose.
.PHONY: check-container
check-container:
	@scripts/install-deps container
	$(Q)nice tests/container/run

clean:
	rm -rf build bin

# Fuzzing (tests/fuzz, docs/testing.md): libFuzzer targets built with clang, ASan and UBSan from
# the project's own sources, into build/fuzz (the gcc build is untouched). Each target lists the
# objects it links. `make fuzz FUZZ_SECS=N` fuzzes each target N seconds; `make fuzz-smoke` (part
# of `make check`) replays the committed seeds and a few thousand mutations.
FUZZ_CC      ?= clang
FUZZ_SECS    ?= 60
FUZZ_DIR     := build/fuzz
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer -Iinclude -Itests/fuzz $(PKG_CFLAGS)
FUZZ_TARGETS := http_route http_body conf queue_message jwt
FUZZ_OBJ_http_route    := orchestratord/http_route orchestratord/http_util orchestratord/http_input common/names common/states common/log
FUZZ_OBJ_http_body     := orchestratord/http_input orchestratord/http_util common/names common/log
FUZZ_OBJ_conf          := $(CONF_UNITS)
FUZZ_OBJ_jwt           := common/jwt_verify common/jwt_keys common/http_auth
FUZZ_OBJ_queue_message := worker/worker_util worker/worker_dynamic common/names common/amqp_util
FUZZ_BINS    := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_TARGETS))

$(FUZZ_DIR)/%.o: src/%.c | deps
	@mkdir -p $(@D)
	$(quiet) FUZZCC $<
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

define FUZZ_TARGET_RULE
$(FUZZ_DIR)/fuzz_$(1): tests/fuzz/fuzz_$(1).c tests/fuzz/fuzz.h $(patsubst %,$(FUZZ_DIR)/%.o,$(FUZZ_OBJ_$(1)))
	$$(quiet) FUZZLD $$@
	$$(Q)$$(FUZZ_CC) $$(FUZZ_CFLAGS) -fsanitize=fuzzer -o $$@ $$< $$(filter %.o,$$^) $$(PKG_LIBS) -lm
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_TARGET_RULE,$(t))))

fuzz-smoke: $(FUZZ_BINS)
	$(quiet) TEST fuzz-smoke
	$(Q)tests/fuzz/run smoke $(FUZZ_DIR) $(FUZZ_TARGETS)

fuzz: $(FUZZ_BINS)
	@echo "fuzzing each target for $(FUZZ_SECS) s"
	$(Q)FUZZ_SECS=$(FUZZ_SECS) tests/fuzz/run fuzz $(FUZZ_DIR) $(FUZZ_TARGETS)

# The units name /usr/local/sbin, /usr/local/bin and /etc/tasker; sed gives them this install's
# paths. Configuration files an operator may have edited are never overwritten.
UNIT_PATHS = -e 's|/usr/local/sbin/|$(SBINDIR)/|g' -e 's|/usr/local/bin/|$(BINDIR_INST)/|g' \
             -e 's|/etc/tasker/|$(SYSCONFDIR)/tasker/|g'
CONF_FILES = tasker-orchestratord.conf $(patsubst etc/%,%,$(wildcard etc/environments/*.conf))

install: all
	install -d $(DESTDIR)$(SBINDIR)
	install -m 0755 bin/tasker-orchestratord $(DESTDIR)$(SBINDIR)/
	install -d $(DESTDIR)$(BINDIR_INST)
	$(if $(WORKER_SRC),install -m 0755 bin/tasker-worker $(DESTDIR)$(BINDIR_INST)/)
	$(if $(CTL_SRC),install -m 0755 bin/taskerctl $(DESTDIR)$(BINDIR_INST)/)
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 0644 completions/taskerctl.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/taskerctl
	install -d $(DESTDIR)$(SYSCONFDIR)/tasker/environments
	for f in $(CONF_FILES); do \
	  [ -e $(DESTDIR)$(SYSCONFDIR)/tasker/$$f ] || install -m 0644 etc/$$f $(DESTDIR)$(SYSCONFDIR)/tasker/$$f; \
	done
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	for u in tasker-orchestratord.service tasker-worker@.service; do \
	  sed $(UNIT_PATHS) systemd/$$u >$(DESTDIR)$(SYSTEMDUNITDIR)/$$u && chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; \
	done
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 man/man1/tasker-worker.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/man1/taskerctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/man5/tasker-orchestratord.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/man8/tasker-orchestratord.8 $(DESTDIR)$(MANDIR)/man8/
	install -d $(DESTDIR)$(DOCDIR)/templates
	install -m 0644 systemd/tasker-orchestratord.env.example systemd/tasker-worker.env.example $(DESTDIR)$(DOCDIR)/
	install -m 0644 etc/templates/*.json etc/templates/*.yaml $(DESTDIR)$(DOCDIR)/templates/

# Database helpers (DATABASE_URL names the database; the seed's db-* targets).
db-check:
	@test -n "$$DATABASE_URL" || { echo "set DATABASE_URL" >&2; exit 1; }
	psql "$$DATABASE_URL" -Atc "SELECT 'connected: ' || current_database() || ' on PostgreSQL ' || current_setting('server_version')"

db-migrate: all
	@test -n "$$DATABASE_URL" || { echo "set DATABASE_URL" >&2; exit 1; }
	$(OUT)/tasker-orchestratord migrate

db-setup: db-check db-migrate

db-reset: all
	@test -n "$$DATABASE_URL" || { echo "set DATABASE_URL" >&2; exit 1; }
	psql "$$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS tasker CASCADE; DROP SCHEMA IF EXISTS pgmq CASCADE; DROP EXTENSION IF EXISTS pgmq CASCADE"
	$(OUT)/tasker-orchestratord migrate

-include $(wildcard $(OBJDIR)/*/*.d $(OBJDIR)/tests/*.d $(FUZZ_DIR)/*/*.d)
