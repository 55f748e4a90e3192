#!/usr/bin/env bash
# Records the HTTP traffic of the whole test suite (RECORD_TRAFFIC, see
# traffic_test.go) and validates every exchange against its listener's
# document (openapi.json, openapi-management.json) with kin-openapi (this directory's module, fetched from the module proxy on
# first use). Needs TEST_DB_DSN like the tests; extra arguments go to the
# checker (-v lists 400s to requests the document accepts).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
traffic="$(mktemp "${TMPDIR:-/tmp}/usersvc-traffic.XXXXXX")"
trap 'rm -f "$traffic"' EXIT

echo "== recording the test suite's traffic"
(cd "$root" && RECORD_TRAFFIC="$traffic" go test -count=1 ./...)

echo "== validating it against openapi.json and openapi-management.json with kin-openapi"
cd "$root/tools/openapicheck"
go run . -spec "$root/openapi.json" -management-spec "$root/openapi-management.json" -traffic "$traffic" "$@"
