#!/usr/bin/env bash
# kiln's whole test run, from a fresh Debian bookworm machine with Rust installed:
# installs what the tests need, then formatting, lints and every test.
#
#   ./scripts/test.sh            everything (what CI runs)
#   ./scripts/test.sh -p kiln-registry   extra arguments go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check

echo "==> cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> tests" >&2
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
cargo test --workspace --locked --doc
