# Thin wrapper over CMake. 'make test' and 'make demo' do the whole set-up
# on a fresh Debian machine: 'deps' installs the packages that are missing.

# clang and libclang-rt-14-dev (its sanitizer and libFuzzer runtimes)
# build the fuzz targets. A JDK, Maven and kcat run the real Kafka broker
# of the Kafka specs and 'make kafka'. libhttp-parser-dev parses the
# requests of 'tide run --http'; curl and prometheus (its promtool checks
# /metrics) are for spec/cli/http_spec.lua, headless chromium (the
# dashboard's page, run and screenshotted) for spec/cli/dashboard_spec.lua.
DEPS := cmake pkg-config gcc make luajit libluajit-5.1-dev librdkafka-dev \
        librocksdb-dev libuv1-dev libhttp-parser-dev lua-cjson lua-busted \
        luarocks curl prometheus chromium \
        clang libclang-rt-14-dev libedit2 tmux util-linux strace \
        openjdk-17-jdk-headless maven kcat
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
JOBS ?= 2
# Seconds each fuzz target runs: in 'make test', and in 'make fuzz'.
FUZZ_TEST_SECONDS ?= 20
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))

.PHONY: all deps build build-asan build-fuzz test test-plain test-asan \
        test-fuzz fuzz fuzz-corpus crash-loop demo bench cdef clean install

all: build

deps:
	@missing=""; for p in $(DEPS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j$(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTIDE_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)

# The libFuzzer targets (fuzz/), clang with ASan+UBSan; nothing else.
build-fuzz: deps
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DTIDE_FUZZ=ON \
	  -DTIDE_BUILD_CLI=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTIDE_FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) >/dev/null
	@cmake --build build-fuzz -j$(JOBS)

# Installs bin/tide, the Lua runtime (share/lua/5.1) and libtide.so
# (lib/lua/5.1/tide, for a plain luajit or busted) under PREFIX. The
# installed tide takes its runtime from its own prefix, so it keeps
# working after the source tree is moved or deleted, and the prefix
# itself may be moved.
PREFIX ?= /usr/local
install: build
	cmake --install build --prefix "$(PREFIX)"

test-plain: build
	cd build && ctest --output-on-failure -j$(JOBS)

test-asan: build-asan
	cd build-asan && ctest --output-on-failure -j$(JOBS)

# Each fuzz target for FUZZ_TEST_SECONDS; fails on anything found.
test-fuzz: build-fuzz
	cd build-fuzz && ctest --output-on-failure -j$(JOBS)

# Every C test and busted spec, in the plain build, then under ASan+UBSan;
# then every fuzz target for a short time.
test: test-plain test-asan test-fuzz

# Each fuzz target for FUZZ_SECONDS, one at a time. What they learn stays
# in build-fuzz/fuzz-out/<target>/corpus; findings are saved beside it.
fuzz: build-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  echo "make fuzz: fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  nice sh fuzz/run.sh build-fuzz/fuzz_$$t fuzz/corpus/$$t \
	    build-fuzz/fuzz-out/$$t $(FUZZ_SECONDS) || exit 1; \
	done

# Rewrites the seed corpora in fuzz/corpus/ from files tide makes.
fuzz-corpus: build
	TIDE_LIB=build/libtide.so luajit fuzz/make_corpus.lua

# The crash loop: SIGKILLs 'tide run' of a two-store job at random moments
# for CRASH_MINUTES (or CRASH_KILLS kills) and checks state and outputs
# after every kill (scripts/crash_loop.lua).
CRASH_MINUTES ?= 10
CRASH_KILLS ?= 1000000
crash-loop: build
	TIDE_BIN=build/tide luajit scripts/crash_loop.lua \
	  --minutes $(CRASH_MINUTES) --kills $(CRASH_KILLS)

# Apache Kafka (KRaft) for the Kafka specs and for development:
# 'kafka-deps' fetches its jars once (kafka/pom.xml, through Maven) into
# ${TIDE_CACHE:-~/.cache/tide}/kafka-VERSION; 'kafka' starts a single-node
# broker on loopback in the foreground and prints its bootstrap address
# (Ctrl-C stops it). Tools: luajit scripts/kafka.lua kafka-topics ...
.PHONY: kafka kafka-deps
kafka-deps: deps
	@luajit scripts/kafka.lua deps

kafka: kafka-deps
	@luajit scripts/kafka.lua run

cdef: build
	@cmake --build build --target cdef

demo: build
	@sh scripts/demo.sh

bench: build
	@sh bench/run.sh

clean:
	rm -rf build build-asan build-fuzz
