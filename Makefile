# entropyd: the two commands of the README, and the rest.
#   make run    install what is missing, build, serve in the foreground (defaults)
#   make check  install what the tests need, build, run every test
#   make bench  throughput and latency next to the alternatives (not a test)
# Missing Debian packages are installed with apt-get (root, or sudo).

PYTHON := /usr/bin/python3
BUILD := build
ASAN := build-asan
FUZZ := build-fuzz
FUZZ_SECONDS ?= 60
APT := scripts/apt-ensure

DEPS_BUILD := gcc make meson ninja-build pkg-config libevent-dev libsystemd-dev libcmocka-dev \
	libftdi1-dev libusb-1.0-0-dev libssl-dev libseccomp-dev libjson-c-dev
DEPS_TEST := $(DEPS_BUILD) python3 python3-pytest socat g++ openssl \
	qemu-system-x86 qemu-system-ppc busybox-static cpio procps iproute2 util-linux systemd \
	libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu \
	gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross clang libclang-rt-14-dev \
	libjs-chart.js chromium chromium-driver python3-selenium prometheus entropybroker \
	systemd-container debhelper lintian mmdebstrap
ENTROPYD_ARGS ?=

.PHONY: all build run check unit system e2e asan fuzz fuzz-smoke bench deps-build deps-test clean install man

all: build

deps-build:
	@$(APT) $(DEPS_BUILD)

deps-test:
	@$(APT) $(DEPS_TEST)

$(BUILD)/build.ninja:
	meson setup $(BUILD)

$(ASAN)/build.ninja:
	meson setup $(ASAN) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug

$(FUZZ)/build.ninja:
	CC=clang CXX=clang++ meson setup $(FUZZ) -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dbuildtype=debugoptimized

build: deps-build $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	./$(BUILD)/entropyd --foreground $(ENTROPYD_ARGS)

unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

system: build
	ENTROPYD=$(BUILD)/entropyd QNGSIM=$(BUILD)/tests/qngsim/qngsim $(PYTHON) -m pytest -v tests/system

e2e: build
	ENTROPYD=$(BUILD)/entropyd $(PYTHON) -m pytest -v tests/e2e

# The unit and system tests again on an AddressSanitizer + UndefinedBehaviorSanitizer build,
# leak detection on: entropyd frees everything on its way out, so a leak report (which
# changes the exit status) fails the system test that stopped it. No suppressions needed.
asan: deps-test $(ASAN)/build.ninja
	ninja -C $(ASAN)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C $(ASAN) --suite unit --print-errorlogs
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		ENTROPYD=$(ASAN)/entropyd QNGSIM=$(ASAN)/tests/qngsim/qngsim ENTROPYD_SANITIZED=1 \
		$(PYTHON) -m pytest -q tests/system

# Every libFuzzer target (tests/fuzz/fuzz_*.c) for FUZZ_SECONDS each (FUZZ_TARGETS="egd udp"
# for some of them); prints each target's executions and fails on any finding, whose
# artefact is written under build-fuzz/artifacts. Built with -O2 (debugoptimized): several
# times the executions of -O0 in the same time.
FUZZ_TARGETS ?=
fuzz: deps-test $(FUZZ)/build.ninja
	ninja -C $(FUZZ)
	tests/fuzz/run.sh $(FUZZ) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# A short run of every fuzz target, part of make check.
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=10

check: deps-test build
	$(MAKE) unit
	$(MAKE) system
	$(MAKE) asan
	$(MAKE) fuzz-smoke
	$(MAKE) e2e

bench: deps-test build
	$(PYTHON) bench/bench_egd.py
	$(PYTHON) bench/bench_tls.py
	$(PYTHON) bench/bench_guest.py
	$(PYTHON) bench/bench_ppc64.py
	$(PYTHON) bench/bench_scale.py

# Rewrite the man page's option sections from the option tables (src/conf_opts.c); the unit
# test man_options fails until this is done after a change to the tables.
man: build
	doc/man-options.sh update $(BUILD)/entropyd doc/entropyd.8

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
