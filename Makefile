# entropyd: the two commands of the README, and the rest.
#   make run    install what is missing, build, serve in the foreground (defaults)
#   make check  install what the tests need, build, build the .deb, run every test
#   make deb    entropyd_VERSION_ARCH.deb in build-deb/ (dpkg-buildpackage, lintian)
#   make bench  throughput and latency next to the alternatives (not a test)
# Missing Debian packages are installed with apt-get (root, or sudo).

PYTHON := /usr/bin/python3
BUILD := build
ASAN := build-asan
FUZZ := build-fuzz
# The Debian package is built from a copy of the tree in $(DEB), so neither build/ nor the
# folder above the tree (where dpkg-buildpackage writes) is touched.
DEB := build-deb
VERSION := $(shell sed -n "s/^  version : '\(.*\)',/\1/p" meson.build)
DEB_ARCH := $(shell dpkg --print-architecture)
DEB_FILE := $(DEB)/entropyd_$(VERSION)_$(DEB_ARCH).deb
FUZZ_SECONDS ?= 60
APT := scripts/apt-ensure

DEPS_BUILD := gcc make meson ninja-build pkg-config libevent-dev libsystemd-dev libcmocka-dev \
	libftdi1-dev libusb-1.0-0-dev libssl-dev libseccomp-dev libjson-c-dev
DEPS_TEST := $(DEPS_BUILD) python3 python3-pytest socat g++ openssl \
	qemu-system-x86 qemu-system-ppc busybox-static cpio procps iproute2 util-linux systemd \
	libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu \
	gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross clang libclang-rt-14-dev \
	libjs-chart.js chromium chromium-driver python3-selenium prometheus entropybroker \
	systemd-container debhelper lintian mmdebstrap strace
ENTROPYD_ARGS ?=

.PHONY: all build run check unit system e2e asan fuzz fuzz-smoke bench deps-build deps-test clean install man deb

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

# The control socket: /run/entropyd/control.sock as root, else $(BUILD)/control.sock
# (entropyctl --socket $(BUILD)/control.sock status).
RUN_CONTROL := $(if $(filter 0,$(shell id -u)),/run/entropyd/control.sock,$(BUILD)/control.sock)
run: build
	./$(BUILD)/entropyd --foreground --control $(RUN_CONTROL) $(ENTROPYD_ARGS)

unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

system: build
	ENTROPYD=$(BUILD)/entropyd QNGSIM=$(BUILD)/tests/qngsim/qngsim ENTROPYD_DEB=$(DEB_FILE) \
		$(PYTHON) -m pytest -v tests/system

e2e: build
	ENTROPYD=$(BUILD)/entropyd ENTROPYD_DEB=$(DEB_FILE) $(PYTHON) -m pytest -v tests/e2e

# entropyd_VERSION_ARCH.deb with dpkg-buildpackage (binary only, unsigned, tests skipped: the
# other targets run them), then lintian, which must report no error.
deb: deps-test
	rm -rf $(DEB)
	mkdir -p $(DEB)/entropyd-$(VERSION)
	git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c \
		'test ! -e "{}" || printf "%s\0" "{}"' | tar --null -T - -cf - | \
		tar -xf - -C $(DEB)/entropyd-$(VERSION)
	cd $(DEB)/entropyd-$(VERSION) && DEB_BUILD_OPTIONS=nocheck nice dpkg-buildpackage -b -uc -us
	lintian --fail-on error --suppress-tags bad-distribution-in-changes-file $(DEB_FILE)
	@echo "built $(DEB_FILE)"

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
	$(MAKE) deb
	$(MAKE) unit
	$(MAKE) system
	$(MAKE) asan
	$(MAKE) fuzz-smoke
	$(MAKE) e2e

bench: deps-test build
	./$(BUILD)/bench_health
	$(PYTHON) bench/bench_egd.py
	$(PYTHON) bench/bench_drbg.py
	$(PYTHON) bench/bench_tls.py
	$(PYTHON) bench/bench_guest.py
	$(PYTHON) bench/bench_vhost.py
	$(PYTHON) bench/bench_ppc64.py
	$(PYTHON) bench/bench_scale.py
	$(PYTHON) bench/bench_compare.py
	@echo "summary in $(BUILD)/bench-summary.md; bench/readme_table.py copies it into README.md"

# Rewrite the man page's option sections from the option tables (src/conf_opts.c); the unit
# test man_options fails until this is done after a change to the tables.
man: build
	doc/man-options.sh update $(BUILD)/entropyd doc/entropyd.8

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ) $(DEB)
