#!/usr/bin/env bash
# Generated clients against the real service. Generates Go clients from
# openapi.json and openapi-management.json with two generators, ogen and
# oapi-codegen (pinned as tools in go.mod), builds the service, and runs a
# short scenario through each client against it, on a database of its own
# on the server TEST_DB_DSN names (as the tests do; created and dropped by
# the run). Then type-checks a small TypeScript program against the types
# openapi-typescript makes with its defaults (pinned in
# ts/package-lock.json). Nothing generated is committed: it is written
# under gen/ and ts/ (ignored by git) on every run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/clientcheck.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$here"

# generate runs one generator, showing its output only when it fails.
generate() {
  if ! "$@" >"$work/generate.log" 2>&1; then
    cat "$work/generate.log" >&2
    echo "clientcheck: generation failed: $*" >&2
    exit 1
  fi
}

echo "== generating Go clients with ogen and oapi-codegen"
rm -rf gen
mkdir -p gen/oapiapi gen/oapimgmt
generate go tool ogen --target gen/ogenapi --package ogenapi --clean "$root/openapi.json"
generate go tool ogen --target gen/ogenmgmt --package ogenmgmt --clean "$root/openapi-management.json"
# types and client: oapi-codegen's default also writes an echo server,
# which a client does not need.
generate go tool oapi-codegen -generate types,client -package oapiapi -o gen/oapiapi/client.gen.go "$root/openapi.json"
generate go tool oapi-codegen -generate types,client -package oapimgmt -o gen/oapimgmt/client.gen.go "$root/openapi-management.json"

echo "== building the service"
(cd "$root" && go build -o "$work/usersvc" .)

echo "== the scenario through each client, against the service"
go run . -service "$work/usersvc"

echo "== openapi-typescript (defaults), and a create type-checked against its types"
cd ts
npm ci --no-audit --no-fund --loglevel=error
generate npx --no-install openapi-typescript "$root/openapi.json" -o schema.d.ts
npx --no-install tsc --noEmit --strict create.ts
echo "ts: create.ts type-checks against openapi-typescript's schema.d.ts"
