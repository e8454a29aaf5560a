#!/usr/bin/env bash
# Install (npm ci from the committed lock, when it changed) and run every Node check: the
# generated code is fresh, tsc --strict, eslint, then node --test against a real broker (the
# repository's .venv must hold the Python package: ./scripts/test makes it). Arguments narrow
# the tests to those files (e.g. client worker).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cmp -s package-lock.json node_modules/.installed-lock 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock
fi
echo "-- generated code"
node scripts/gen.mjs --check
echo "-- tsc --strict"
npm run --silent build
echo "-- eslint"
npm run --silent lint
echo "-- node --test"
node scripts/test.mjs "$@"
