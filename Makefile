# drift: `make help` lists the targets.

GO       ?= go
OUT      ?= out
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
KEY_FILE ?=
PACKAGES ?=
TEST_PACKAGES ?= python3
NODES    ?= 3

IMAGE_FLAGS   = --out $(OUT) --version $(VERSION) $(if $(KEY_FILE),--key-file $(KEY_FILE)) $(if $(PACKAGES),--packages "$(PACKAGES)")
HOST_PACKAGES = $(shell sed 's/\#.*//' configs/host-packages.txt)

.PHONY: help deps image demo down test test-matrix fuzz unit vet bench-boot bench-join bench-netboot bench-balance bench-sweep bench-storage bench-migrate bench-checkpoint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install the Debian/Ubuntu packages drift needs (asks for sudo when not root)
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		sudo=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else echo "all host packages present"; fi

image: ## build out/vmlinuz, out/initramfs, out/drift.iso and out/pxe/ (KEY_FILE=... to use your key, PACKAGES="python3 ..." for Debian packages on every node)
	$(GO) run ./cmd/drift-image $(IMAGE_FLAGS)

demo: deps image ## boot a 3-node QEMU lab from out/ and show each node's ready line
	$(GO) run ./cmd/drift-lab up --image $(OUT) --nodes $(NODES)
	@echo
	@echo "consoles:  go run ./cmd/drift-lab console 1   (Ctrl-] leaves)"
	@echo "commands:  go run ./cmd/drift-lab exec 2 -- hostname"
	@echo "stop:      make down"

down: ## stop the demo lab
	$(GO) run ./cmd/drift-lab down

vet: ## go vet
	$(GO) vet ./...

FUZZTIME ?= 3s

fuzz: ## run every fuzz target (parsers of what comes off the network, the agents' streams and request bodies) for FUZZTIME each
	@for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$pkg/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$pkg $$f"; \
			out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1) || \
			if echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
				echo "  (Go's fuzzing coordinator missed its own deadline as -fuzztime ended, golang/go#75804: no failing input, not a failure)"; \
			else echo "$$out"; exit 1; fi; \
		done; \
	done

unit: ## unit and host-tier tests only (no VMs)
	$(GO) test -timeout 20m ./...

test: vet fuzz ## unit tests, a short run of every fuzz target, and the QEMU scenario tests (boots real VMs; the image carries TEST_PACKAGES, default python3)
	$(MAKE) image PACKAGES="$(TEST_PACKAGES)"
	DRIFT_QEMU_TESTS=1 DRIFT_IMAGE_DIR=$(abspath $(OUT)) $(GO) test -timeout 50m ./...

test-matrix: image ## boot one worker per cell of the boot matrix (SeaBIOS/OVMF x CD/USB/PXE x each NIC), one at a time, and print the table of times to ready (long under TCG)
	DRIFT_QEMU_TESTS=1 DRIFT_QEMU_MATRIX=1 DRIFT_IMAGE_DIR=$(abspath $(OUT)) $(GO) test -count=1 -timeout 180m -run 'TestMatrix' -v ./qemu-tests/

bench-boot: image ## seconds from QEMU start to ready, beside a minimal-init floor; image sizes
	$(GO) run ./qemu-tests/cmd/bench-boot --image $(OUT)

bench-join: image ## seconds until every node of a 3-node lab sees all 3; memberlist convergence of 50 and 200 in-process agents, gossip bytes per node per second
	$(GO) run ./qemu-tests/cmd/bench-join --image $(OUT)

bench-netboot: image ## seconds from power-on to ready for 1 and 3 PXE workers, beside kernel+initramfs; bytes served per protocol
	$(GO) run ./qemu-tests/cmd/bench-netboot --image $(OUT)

bench-balance: image ## makespan of 9 equal CPU-bound jobs from one node of 3 with balancing off and on, beside the ideal; the simulator at 3 and 1000 nodes
	$(GO) run ./qemu-tests/cmd/bench-balance --image $(OUT)

bench-sweep: image ## makespan of an array of equal tasks from one worker of 3 beside the ideal and a loop of drift run -d; the simulator's 100,000 heavy-tailed tasks on 1000 nodes with and without migration
	$(GO) run ./qemu-tests/cmd/bench-sweep --image $(OUT) -v

bench-storage: image ## MiB/s written to and read from /cluster between two VMs, beside raw TCP over the same link; their ratio
	$(GO) run ./qemu-tests/cmd/bench-storage --image $(OUT)

bench-migrate: image ## migration freeze and total time for 64 MB and 256 MB jobs, beside stop-and-copy by hand and the link floor
	$(GO) run ./qemu-tests/cmd/bench-migrate --image $(OUT)

bench-checkpoint: image ## what checkpoints cost a CPU-bound and a 64 MB job, beside checkpoints off; power-off to output resuming elsewhere
	$(GO) run ./qemu-tests/cmd/bench-checkpoint --image $(OUT) -v

clean: ## remove out/ (the download cache stays)
	rm -rf $(OUT)
