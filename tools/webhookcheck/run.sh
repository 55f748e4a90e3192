#!/usr/bin/env bash
# Records signed webhook deliveries made by the service in the test suite
# (TestWebhookSamples, WEBHOOK_SAMPLES) and verifies them with the
# Standard Webhooks reference library for JavaScript (npm
# standardwebhooks, this directory's package, installed by npm ci). Needs
# TEST_DB_DSN like the tests, and node with npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
samples="$(mktemp "${TMPDIR:-/tmp}/usersvc-webhooks.XXXXXX")"
trap 'rm -f "$samples"' EXIT

if ! command -v npm >/dev/null 2>&1; then
  echo "== installing node and npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q nodejs npm
fi

echo "== recording webhook deliveries"
(cd "$root" && WEBHOOK_SAMPLES="$samples" go test -count=1 -run '^TestWebhookSamples$' .)

echo "== verifying them with standardwebhooks"
cd "$root/tools/webhookcheck"
npm ci --no-audit --no-fund --silent
node check.mjs "$samples"
