#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n "$unformatted" ]]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "== go vet"
go vet ./...
[[ "${1:-}" == "--check-only" ]] && exit 0

# The race detector costs 5-10x; it runs over every package with concurrency
# of its own (store, vending, server, telemetry, sealer, webhooks...). The
# end-to-end suites that drive a browser, a whole attack lab or a killed
# server process run without it: they are slow under it and their
# concurrency is covered by the packages they drive.
slow='sluice/(attack|console|headend/crashtest|bench)$'
race_pkgs=$(go list ./... | grep -Ev "$slow")
plain_pkgs=$(go list ./... | grep -E "$slow")

echo "== go test -race (concurrent packages)"
go test -race -count=1 -timeout 20m $race_pkgs
echo "== go test (end-to-end suites)"
go test -count=1 -timeout 20m $plain_pkgs

echo "== sluice attack (the attack lab, as a user runs it)"
go build -o bin/sluice ./cmd/sluice
bin/sluice attack
