# nimble_fdw: PGXS build, plus the two commands of the README (demo, test).
#
#   make && make install      build and install for the PostgreSQL whose
#                             pg_config is on PATH, or PG_CONFIG=...
#   ./run.sh demo | test      on a fresh Debian machine: install what is
#                             missing, then make demo | make test

MODULE_big = nimble_fdw
# every API description in src/api/ is built in (adding one adds no line here)
OBJS = \
	src/nimble_fdw.o \
	src/options.o \
	src/quals.o \
	src/analyze.o \
	src/key_join.o \
	src/key_join_exec.o \
	src/keys.o \
	src/scan.o \
	src/paging.o \
	src/http.o \
	src/http_failures.o \
	src/shmem.o \
	src/progress.o \
	src/shared_servers.o \
	src/shared_cache.o \
	src/body_pool.o \
	src/json/json_doc.o \
	src/json/json_value.o \
	src/json/json_to_jsonb.o \
	src/decode.o \
	src/columns.o \
	src/import.o \
	src/security.o \
	src/option_changes.o \
	src/server_state.o \
	src/estimates.o \
	src/throttle.o \
	src/cache.o \
	src/stats.o \
	src/wait.o \
	$(patsubst %.c,%.o,$(sort $(wildcard src/api/*.c)))

EXTENSION = nimble_fdw
DATA = nimble_fdw--1.0.sql nimble_fdw--1.0--1.1.sql
# the manual goes with the extension (share/doc/extension/)
DOCS = README.md

# The release, from META.json (its one place): the C code knows it as
# NIMBLE_FDW_VERSION, for the User-Agent.  The SQL-level version is the
# control file's default_version.
NIMBLE_FDW_VERSION := $(shell sed -n 's/^   "version": "\([^"]*\)",$$/\1/p' $(dir $(firstword $(MAKEFILE_LIST)))META.json)
PG_CPPFLAGS = -Isrc -DNIMBLE_FDW_VERSION='"$(NIMBLE_FDW_VERSION)"'
PGFILEDESC = "nimble_fdw - foreign data wrapper for Nimble batch jobs"

REGRESS = setup options batches batch_tasks batch_progress tasks decode api_scrape api_factcheck pushdown key_types explain_params joins key_join analyze errors cache_and_rate rate_limit stats wait_batch security upgrade

# the suites compare multibyte text: their database is UTF-8 whatever the
# cluster's default encoding
REGRESS_OPTS = --encoding=UTF8

SHLIB_LINK = -lcurl
# Our sources build warning-free, and test/run.sh (so make test and CI)
# builds them with COPT=-Werror.  The Makefile a user installs with does
# not: a newer compiler's new warning must not stop an install.

# no LLVM bitcode: JIT-inlining an HTTP client buys nothing, and clang
# need not be installed
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else ifneq ($(filter-out demo test regress-test http2-check cron-test shared-test bench bench-join bench-rate fuzz reliability,$(or $(MAKECMDGOALS),all)),)
$(error $(PG_CONFIG) not found: install postgresql-server-dev-NN (./run.sh demo does, on Debian) or set PG_CONFIG=/usr/lib/postgresql/NN/bin/pg_config)
endif

# PGXS tracks no header dependencies: every object depends on our headers
$(OBJS): src/nimble_fdw.h src/http_internal.h src/key_join.h src/api/api.h src/compat.h $(wildcard src/json/*.h)

.PHONY: demo test regress-test http2-check cron-test shared-test fuzz reliability bench bench-join bench-rate
demo:
	test/run.sh demo

# every test: the pg_regress suites (which build and install), then the
# checks that need real components besides PostgreSQL
test: regress-test
	$(MAKE) http2-check
	$(MAKE) cron-test
	$(MAKE) shared-test

# the mock's self-check and the pg_regress suites, with the key-in-log check
regress-test:
	test/run.sh test

# HTTP/2 multiplexing (nginx, TLS, ALPN) and keep-alive reuse; about 5 s
http2-check:
	test/http2/run.sh

# README section 9's pg_cron recipes, run by a real pg_cron against the
# mock (about 1 min: pg_cron runs jobs on minute boundaries)
cron-test:
	test/cron/run.sh

# shared memory (nimble_fdw preloaded): several backends against one API
# window, terminate/cancel with requests in flight, a hold set by one
# backend and waited out by another, nimble_scans across backends (~30 s)
shared-test:
	test/shared/run.sh

# the benchmark against curl baselines: test/bench/REPORT.md (~13 min)
bench:
	test/bench/run.sh

# joins with local tables, the key join against = ANY: test/bench/JOIN_REPORT.md (~6 min)
bench-join:
	/usr/bin/python3 test/bench/join_bench.py

# request rate limiting, against curl and a mock with a 200-per-5-s window:
# test/bench/RATE_REPORT.md (~9 min; rate_bench.py --quick: ~1.5 min)
bench-rate:
	/usr/bin/python3 test/bench/rate_bench.py

# a 60 s fuzz run of the response decoder (make -C test/fuzz run: 10 min)
fuzz:
	$(MAKE) -C test/fuzz smoke

# cancel latency, leak, soak and valgrind figures into test/reliability/REPORT.md
reliability:
	test/reliability/run_all.sh --valgrind
