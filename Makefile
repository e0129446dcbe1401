# Tether: `make demo` builds and shows forwarding; `make test` runs every test;
# `make bench` (or `make bench-quick`) measures forwarding.
SWIFT ?= swift
PYTHON ?= python3
RELEASE_BIN := $(shell pwd)/.build/release
# The Swift runtime linked in statically: wrap-and-run and each deputy start
# in about half the time (no libswiftCore/Foundation loading), which is most
# of Tether's start-up cost.
RELEASE := -c release --static-swift-stdlib

.PHONY: all build debug demo test unit-test integration-test bench bench-quick clean

all: build

build:
	$(SWIFT) build $(RELEASE) --product homestub
	$(SWIFT) build $(RELEASE) --product wrap-and-run

debug:
	$(SWIFT) build

# A private home (--home spawn) whose export root holds a file the target
# does not have at that path: the program reads and appends to it at home.
demo: build
	@bash scripts/demo.sh "$(RELEASE_BIN)"

test: build unit-test integration-test

unit-test:
	$(SWIFT) test

integration-test: build
	TETHER_BIN="$(RELEASE_BIN)" $(PYTHON) -m pytest -v Tests/integration

# Forwarding benchmarks (bench/, issue 3): every op in every configuration with
# the C floors, one table. BENCH_ARGS e.g. "--json bench.json".
BENCH_ARGS ?=

bench:
	$(SWIFT) build $(RELEASE)
	$(RELEASE_BIN)/forward-bench $(BENCH_ARGS)

bench-quick:
	$(SWIFT) build $(RELEASE)
	$(RELEASE_BIN)/forward-bench --quick $(BENCH_ARGS)

clean:
	rm -rf .build
