# nimble_fdw: PGXS build, plus the two commands of the README (demo, test).

MODULE_big = nimble_fdw
OBJS = \
	src/nimble_fdw.o \
	src/options.o \
	src/quals.o \
	src/scan.o \
	src/http.o \
	src/json_doc.o \
	src/decode.o \
	src/routes.o \
	src/import.o \
	src/security.o \
	src/estimates.o \
	src/throttle.o \
	src/cache.o \
	src/stats.o

EXTENSION = nimble_fdw
DATA = nimble_fdw--1.0.sql nimble_fdw--1.0--1.1.sql
PGFILEDESC = "nimble_fdw - foreign data wrapper for Nimble batch jobs"

REGRESS = setup options batches batch_tasks batch_progress pushdown joins errors cache_and_rate stats upgrade

SHLIB_LINK = -lcurl
# our sources build warning-free; CI keeps them so
PG_CFLAGS = -Werror

# no LLVM bitcode: JIT-inlining an HTTP client buys nothing, and clang
# need not be installed
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: every object depends on our headers
$(OBJS): src/nimble_fdw.h src/json_doc.h

.PHONY: demo test fuzz reliability
demo:
	test/run.sh demo

test:
	test/run.sh test

# a 60 s fuzz run of the response decoder (make -C test/fuzz run: 10 min)
fuzz:
	$(MAKE) -C test/fuzz smoke

# cancel latency, leak, soak and valgrind figures into test/reliability/REPORT.md
reliability:
	test/reliability/run_all.sh --valgrind
