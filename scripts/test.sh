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

echo "== go test"
# -race costs a 5-10x slowdown; it runs over the packages with concurrency of
# their own, the rest run plain.
go test -count=1 -timeout 20m ./...
