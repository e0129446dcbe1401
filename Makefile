# Tether: `make demo` builds and shows forwarding; `make test` runs every test;
# `make bench` (or `make bench-quick`) measures forwarding.
SWIFT ?= swift
PYTHON ?= python3
RELEASE_BIN := $(shell pwd)/.build/release
# The Swift runtime linked in statically: wrap-and-run and each deputy start
# in about half the time (no libswiftCore/Foundation loading), which is most
# of Tether's start-up cost.
RELEASE := -c release --static-swift-stdlib

.PHONY: all build debug demo test unit-test integration-test bench bench-quick clean \
	fuzz-build fuzz-quick fuzz asan-test tsan-test deps test-deps

all: build

# The system packages, checked (and installed as root on Debian/Ubuntu)
# before anything is built: scripts/check-deps says what is missing.
deps:
	@SWIFT="$(SWIFT)" bash scripts/check-deps build

test-deps:
	@SWIFT="$(SWIFT)" bash scripts/check-deps test

build: deps
	$(SWIFT) build $(RELEASE) --product homestub
	$(SWIFT) build $(RELEASE) --product wrap-and-run

debug:
	$(SWIFT) build

# A private home (--home spawn) whose export root holds a file the target
# does not have at that path: the program reads and appends to it at home.
demo: build
	@bash scripts/demo.sh "$(RELEASE_BIN)"

test: test-deps build unit-test integration-test fuzz-quick

unit-test:
	$(SWIFT) test

# The whole suite once per engine (README, Engines).
integration-test: test-deps build
	TETHER_ENGINE=seccomp TETHER_BIN="$(RELEASE_BIN)" $(PYTHON) -m pytest -v Tests/integration
	TETHER_ENGINE=ptrace TETHER_BIN="$(RELEASE_BIN)" $(PYTHON) -m pytest -v Tests/integration

# Forwarding benchmarks (bench/, issues 3 and 9): every op in every configuration
# with the polled C floors, the load, start-up and CPU sections, and the targets
# as ok/MISS, all from one run. BENCH_ARGS e.g. "--json bench.json".
BENCH_ARGS ?=

bench:
	$(SWIFT) build $(RELEASE)
	$(RELEASE_BIN)/forward-bench $(BENCH_ARGS)

bench-quick:
	$(SWIFT) build $(RELEASE)
	$(RELEASE_BIN)/forward-bench --quick $(BENCH_ARGS)

# Real workloads (bench/workloads, issue 9): git status, make, tar, python
# imports and rsync on a tree at home, native vs Tether (TCP, spawn) vs sshfs
# (when sshfs and sshd are installed), one table. WORKLOADS_ARGS e.g.
# "--json workloads.json", "--quick --rounds 1", "--only make,tar".
WORKLOADS_ARGS ?=

.PHONY: bench-workloads
bench-workloads: build
	$(PYTHON) bench/workloads/run.py --bin "$(RELEASE_BIN)" $(WORKLOADS_ARGS)

# libFuzzer over the Wire decoders and the handshake (fuzz/, issue 8). The
# targets exist only with TETHER_FUZZ=1 (Package.swift) and build in their own
# scratch directory with the fuzzer and AddressSanitizer in every Swift file.
# fuzz-quick: FUZZ_QUICK_SECONDS in all, split evenly; fuzz: FUZZ_SECONDS each.
FUZZ_TARGETS := fuzz-frame-header fuzz-request fuzz-response fuzz-handshake fuzz-sealed
FUZZ_BUILD := -c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
FUZZ_QUICK_SECONDS ?= 60
FUZZ_SECONDS ?= 600

fuzz-build:
	@for t in $(FUZZ_TARGETS); do TETHER_FUZZ=1 $(SWIFT) build $(FUZZ_BUILD) --product $$t || exit 1; done

fuzz-quick: fuzz-build
	@bash scripts/fuzz.sh $$(( $(FUZZ_QUICK_SECONDS) / $(words $(FUZZ_TARGETS)) )) $(FUZZ_TARGETS)

fuzz: fuzz-build
	@bash scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The integration suite against homestub and wrap-and-run built with
# AddressSanitizer (.build-asan) or ThreadSanitizer (.build-tsan); every
# report, from any of their processes, fails the run (scripts/sanitizer-test.sh).
asan-test:
	@bash scripts/sanitizer-test.sh address

tsan-test:
	@bash scripts/sanitizer-test.sh thread

# The two tools and their shell completions, under PREFIX (DESTDIR for
# staging): binaries in bin, completions where bash-completion, zsh and
# fish look for them.
PREFIX ?= /usr/local
BINDIR = $(DESTDIR)$(PREFIX)/bin
BASHDIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d

.PHONY: install
install: build
	install -d "$(BINDIR)" "$(BASHDIR)" "$(ZSHDIR)" "$(FISHDIR)"
	@set -e; for t in homestub wrap-and-run; do \
		install -m 755 "$(RELEASE_BIN)/$$t" "$(BINDIR)/$$t"; \
		"$(RELEASE_BIN)/$$t" --generate-completion-script bash > "$(BASHDIR)/$$t"; \
		"$(RELEASE_BIN)/$$t" --generate-completion-script zsh > "$(ZSHDIR)/_$$t"; \
		"$(RELEASE_BIN)/$$t" --generate-completion-script fish > "$(FISHDIR)/$$t.fish"; \
		chmod 644 "$(BASHDIR)/$$t" "$(ZSHDIR)/_$$t" "$(FISHDIR)/$$t.fish"; \
		echo "installed $(BINDIR)/$$t and its bash, zsh and fish completions"; \
	done

clean:
	rm -rf .build .build-fuzz .build-asan .build-tsan
