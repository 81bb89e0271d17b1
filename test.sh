#!/usr/bin/env bash
# Runs every test: unit tests of the pure parts, integration tests that start
# the real binary on free ports, and the browser test (tests/browser.rs),
# which drives Debian's chromium through chromedriver.
#
# Installs what the tests need first when it is missing: chromium and
# chromium-driver, with apt-get, when running as root on Debian. Then the
# browser test is required to run (WATERCOOLER_REQUIRE_BROWSER=1) instead of
# skipping itself. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"

have() { command -v "$1" >/dev/null 2>&1; }

if ! have chromium || ! have chromedriver; then
    if [ "$(id -u)" = 0 ] && have apt-get; then
        echo "test.sh: installing chromium and chromium-driver for the browser test" >&2
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            chromium chromium-driver
    else
        echo "test.sh: chromium or chromedriver missing and not root with apt-get:" \
            "the browser test will be skipped" >&2
    fi
fi

if have chromium && have chromedriver; then
    export WATERCOOLER_REQUIRE_BROWSER=1
fi

cargo test --all-targets "$@"
