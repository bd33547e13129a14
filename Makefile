# Thin wrapper over CMake. 'make test' and 'make demo' do the whole set-up
# on a fresh Debian machine: 'deps' installs the packages that are missing.

DEPS := cmake pkg-config gcc make luajit libluajit-5.1-dev librdkafka-dev \
        librocksdb-dev libuv1-dev lua-cjson lua-busted luarocks
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
JOBS ?= 2

.PHONY: all deps build build-asan test test-plain test-asan demo bench cdef clean

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

test-plain: build
	cd build && ctest --output-on-failure -j$(JOBS)

test-asan: build-asan
	cd build-asan && ctest --output-on-failure -j$(JOBS)

# Every C test and busted spec, in the plain build, then under ASan+UBSan.
test: test-plain test-asan

cdef: build
	@cmake --build build --target cdef

demo: build
	@sh scripts/demo.sh

bench: build
	@sh bench/run.sh

clean:
	rm -rf build build-asan
