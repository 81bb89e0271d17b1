#!/usr/bin/env bash
# Scans a release node's secure port with testssl.sh (Debian package
# `testssl.sh`, installed with apt-get when missing) and prints a summary.
#
# Usage: scripts/testssl.sh [--self-signed]
#
# By default the node serves a leaf certificate from a throwaway CA made
# here (ECDSA P-256, SAN localhost and 127.0.0.1, a CRL URI like a public
# CA's), and testssl trusts that CA (--add-ca): the scan then judges the
# TLS stack, not the certificate's provenance. With --self-signed the node
# uses the certificate it makes at start; testssl then rates the chain of
# trust CRITICAL and the missing revocation info HIGH, which only restate
# "self-signed", so those two findings are shown but not counted.
#
# Exits 1 if any finding is HIGH or CRITICAL, if a protocol other than
# TLS 1.2 and 1.3 is offered, or if either of those is not; 2 if the scan
# could not run. The node runs on free ports and is stopped by its PID.
set -euo pipefail

self_signed=0
case "${1:-}" in
    '') ;;
    --self-signed) self_signed=1 ;;
    *) echo "usage: $0 [--self-signed]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."

testssl=$(command -v testssl || command -v testssl.sh || true)
if [ -z "$testssl" ]; then
    apt-get install -y testssl.sh >/dev/null || { apt-get update >/dev/null && apt-get install -y testssl.sh >/dev/null; }
    testssl=$(command -v testssl || command -v testssl.sh)
fi
cargo build --release --quiet
bin=target/release/watercooler

work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

tls_args=()
scan_args=()
if [ "$self_signed" -eq 0 ]; then
    (
        umask 077
        cd "$work"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout ca.key -out ca.pem -days 90 -subj "/CN=watercooler test CA" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout leaf.key -out leaf.csr -subj "/CN=localhost" 2>/dev/null
        printf '%s\n' \
            "subjectAltName = DNS:localhost, IP:127.0.0.1" \
            "basicConstraints = critical, CA:FALSE" \
            "keyUsage = critical, digitalSignature" \
            "extendedKeyUsage = serverAuth" \
            "crlDistributionPoints = URI:http://127.0.0.1/watercooler-test-ca.crl" >leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 90 -extfile leaf.ext -out leaf.pem 2>/dev/null
    )
    tls_args=(--cert "$work/leaf.pem" --key "$work/leaf.key")
    scan_args=(--add-ca "$work/ca.pem")
fi

"$bin" --bind 127.0.0.1 --port 0 --secure-port 0 --log warn "${tls_args[@]}" \
    >"$work/node.out" 2>"$work/node.err" &
pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's|.*listening on https://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$work/node.out")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "the node did not start:" >&2
    cat "$work/node.err" >&2
    exit 2
fi
echo "node $pid: https://localhost:$port/ ($([ "$self_signed" -eq 1 ] && echo self-signed || echo test CA))"

csv="$work/testssl.csv"
timeout 900 "$testssl" --quiet --color 0 --warnings off --nodns none --ip 127.0.0.1 \
    --csvfile "$csv" "${scan_args[@]}" "https://localhost:$port/" >"$work/testssl.out" 2>&1 || true
if [ ! -s "$csv" ]; then
    echo "testssl produced no results:" >&2
    tail -n 20 "$work/testssl.out" >&2
    exit 2
fi

# CSV rows: "id","fqdn/ip","port","severity","finding","cve","cwe"
ignored='^$'
if [ "$self_signed" -eq 1 ]; then
    ignored='^(cert_chain_of_trust|cert_revocation)$'
fi
awk -F'","' -v ignored="$ignored" '
    NR == 1 { next }
    {
        id = substr($1, 2); sev = $4; finding = $5
        count[sev]++
        if (id ~ /^(SSLv2|SSLv3|TLS1|TLS1_1|TLS1_2|TLS1_3)$/) {
            offered = finding ~ /^offered/
            printf "  %-8s %s\n", id, finding
            if (id ~ /^TLS1_[23]$/ && !offered) { bad++; print "    ^ should be offered" }
            if (id !~ /^TLS1_[23]$/ && offered) { bad++; print "    ^ must not be offered" }
        }
        if (sev ~ /^(MEDIUM|HIGH|CRITICAL)$/) {
            flagged[++n] = sprintf("  %-8s %-22s %s%s", sev, id, finding,
                                   id ~ ignored ? "   (self-signed: not counted)" : "")
            if (sev != "MEDIUM" && id !~ ignored) bad++
        }
    }
    END {
        printf "findings:"
        split("CRITICAL HIGH MEDIUM LOW WARN OK INFO", order, " ")
        for (i = 1; i <= 7; i++) if (count[order[i]]) printf " %s %d,", order[i], count[order[i]]
        print ""
        for (i = 1; i <= n; i++) print flagged[i]
        if (bad) { printf "FAIL: %d problem(s)\n", bad; exit 1 }
        print "PASS: no HIGH or CRITICAL finding; TLS 1.2 and 1.3 only"
    }' "$csv"
