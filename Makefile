# Tether: `make demo` builds and shows forwarding; `make test` runs every test.
SWIFT ?= swift
PYTHON ?= python3
RELEASE_BIN := $(shell pwd)/.build/release

.PHONY: all build debug demo test unit-test integration-test clean

all: build

build:
	$(SWIFT) build -c release --product homestub
	$(SWIFT) build -c release --product wrap-and-run

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

clean:
	rm -rf .build
