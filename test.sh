#!/usr/bin/env bash
# Runs every test: unit tests of the pure parts and integration tests that
# start the real binary on free ports. Installs what the tests need first when
# it is missing (nothing beyond cargo yet).
set -euo pipefail
cd "$(dirname "$0")"
cargo test --all-targets "$@"
