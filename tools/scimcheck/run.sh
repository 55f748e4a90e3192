#!/usr/bin/env bash
# Records the HTTP traffic of the SCIM tests (RECORD_TRAFFIC, see
# traffic_test.go) and validates every SCIM answer with a third-party
# SCIM library, elimity-com/scim (this directory's module, fetched from
# the module proxy on first use). Needs TEST_DB_DSN like the tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
traffic="$(mktemp "${TMPDIR:-/tmp}/usersvc-scim-traffic.XXXXXX")"
trap 'rm -f "$traffic"' EXIT

echo "== recording the SCIM tests' traffic"
(cd "$root" && RECORD_TRAFFIC="$traffic" go test -count=1 -run 'SCIM|ProvisioningToken' .)

echo "== validating it with elimity-com/scim"
cd "$root/tools/scimcheck"
go run . -traffic "$traffic" "$@"
