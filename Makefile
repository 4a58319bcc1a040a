# ghost — transparent checkpoint/restart for batch jobs.
#
#   make deps    install the Debian packages the build needs (as root, only if missing)
#   make build   swift build
#   make test    deps + build + the whole test suite (unit and end-to-end)
#   make demo    checkpoint, kill -9 and resume the MGS example; compare checksums
#   make clean   remove build products
#
# CI (.ci/run) runs `make test`.

SHELL      := /bin/bash
SWIFT      ?= swift
SWIFTFLAGS ?=
# libgomp1: OpenMP runtime of examples/mgs mgs-omp (gcc -fopenmp; omp.h comes with gcc's libgcc-N-dev)
DEPS_PKGS  := libzstd-dev libxxhash-dev libslurm-dev pkg-config gcc libc6-dev make libgomp1

.PHONY: all deps build build-tests test demo mgs clean release

# Release binaries carry the Swift runtime (--static-swift-stdlib): they run
# on nodes without Swift and start faster from a cold page cache. (Debug and
# test builds stay dynamic: XCTest needs the shared runtime.)
release: deps
	$(SWIFT) build -c release --static-swift-stdlib

all: build

# Installs the missing packages with apt-get when running as root; otherwise
# names them and fails (a normal user cannot install them).
deps:
	@missing=""; \
	if command -v dpkg-query >/dev/null 2>&1; then \
	  for p in $(DEPS_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	  done; \
	else \
	  pkg-config --exists libzstd libxxhash 2>/dev/null || missing=" (libzstd/libxxhash development files)"; \
	fi; \
	if [ -z "$$missing" ]; then \
	  echo "deps: all present ($(DEPS_PKGS))"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "deps: installing$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
	  echo "deps: missing$$missing; install them as root (apt-get install$$missing)" >&2; exit 1; \
	fi

build: deps
	$(SWIFT) build $(SWIFTFLAGS)

build-tests: deps
	$(SWIFT) build --build-tests $(SWIFTFLAGS)

# The end-to-end tests find ghost-run and ghost-resume through GHOST_BIN_DIR.
# XCTest only (the suite has no swift-testing tests); the last line is a plain
# "N passed, M failed" summary.
test: build-tests
	@set -o pipefail; GHOST_BIN_DIR="$$($(SWIFT) build --show-bin-path $(SWIFTFLAGS))" \
	  $(SWIFT) test --disable-swift-testing $(SWIFTFLAGS) 2>&1 | tee .build/test.log; rc=$$?; \
	  line=$$(grep -E "Executed [0-9]+ tests?, with [0-9]+ failures?" .build/test.log | tail -1); \
	  total=$$(echo "$$line" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/'); \
	  failed=$$(echo "$$line" | sed -E 's/.*with ([0-9]+) failures?.*/\1/'); \
	  if [ -n "$$line" ]; then echo "$$((total - failed)) passed, $$failed failed"; fi; exit $$rc

mgs:
	$(MAKE) -C examples/mgs

demo: build mgs
	GHOST_BIN_DIR="$$($(SWIFT) build --show-bin-path $(SWIFTFLAGS))" scripts/demo.sh

clean:
	rm -rf .build ghost-images
	$(MAKE) -C examples/mgs clean

# Slurm: a real single-node Slurm (root), the SPANK plugin, the end-to-end suite.
.PHONY: test-slurm slurm-up slurm-down spank
test-slurm: build
	GHOST_BIN_DIR="$$($(SWIFT) build --show-bin-path $(SWIFTFLAGS))" Tests/slurm/run.sh
slurm-up:
	scripts/slurm/up.sh
slurm-down:
	scripts/slurm/down.sh
spank:
	$(MAKE) -C slurm-plugins
