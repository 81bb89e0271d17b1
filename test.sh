#!/usr/bin/env bash
# Runs every test: unit tests of the pure parts, integration tests that start
# the real binary on free ports, and the browser test (tests/browser.rs),
# which drives Debian's chromium through chromedriver.
#
# Installs what the tests need first when it is missing: chromium and
# chromium-driver, with apt-get, when running as root on Debian (then the
# browser test is required to run, WATERCOOLER_REQUIRE_BROWSER=1, instead of
# skipping itself); nghttp2-client, Python h2 (in a venv under target/) and
# httpwg-cli for the HTTP/2 tests; redis-server for the Redis bus tests
# (then required, WATERCOOLER_REQUIRE_REDIS=1). Extra arguments go to
# `cargo test`.
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

# HTTP/2 clients that are not ours (tests/h2.rs): nghttp (Debian
# nghttp2-client), Python h2 in a venv under target/, the httpwg suite.
if ! have nghttp && [ "$(id -u)" = 0 ] && have apt-get; then
    echo "test.sh: installing nghttp2-client for the HTTP/2 tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nghttp2-client \
        || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nghttp2-client; }
fi
# A real redis-server for the Redis bus tests (tests/redis.rs): Debian's.
if ! have redis-server && [ "$(id -u)" = 0 ] && have apt-get; then
    echo "test.sh: installing redis-server for the Redis bus tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
        || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; }
fi
if have redis-server; then
    export WATERCOOLER_REQUIRE_REDIS=1
fi

pyenv="$PWD/target/pyenv"
if [ ! -x "$pyenv/bin/python" ] || ! "$pyenv/bin/python" -c 'import h2' 2>/dev/null; then
    echo "test.sh: making a Python venv with h2 in $pyenv" >&2
    python3 -m venv "$pyenv" && "$pyenv/bin/pip" install -q 'h2>=4,<5' \
        || echo "test.sh: no Python h2: its HTTP/2 test will be skipped" >&2
fi
export WATERCOOLER_PYTHON="$pyenv/bin/python"
export PATH="$HOME/.cargo/bin:$PATH"
if ! have httpwg; then
    echo "test.sh: installing httpwg-cli (HTTP/2 conformance)" >&2
    cargo install --locked httpwg-cli || echo "test.sh: no httpwg: the conformance test will be skipped" >&2
fi

cargo test --all-targets "$@"
