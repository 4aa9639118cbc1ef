# The two commands of the README: `make run` and `make test`.
GO ?= go

.PHONY: run test check build

# run: the head-end on embedded defaults in ./sluice-data.
run:
	$(GO) run ./cmd/sluice serve

# test: installs and starts what the suite needs, checks formatting and vet,
# then runs every test.
test:
	bash scripts/test.sh

check:
	bash scripts/test.sh --check-only

build:
	$(GO) build -o bin/sluice ./cmd/sluice
