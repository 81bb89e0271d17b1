#!/usr/bin/env bash
# Side-by-side benchmark: watercooler against nchan (nginx pub/sub), issues 5,
# 11, 12 and 13; the durable history's cost, issue 15 (l); the cluster's
# mesh against its Redis bus, issue 14 (m); and TLS links against clear
# links, issue 16 (t).
#
#   bench/run.sh                 every scenario (a-h, r, l, m, t), ~10½ minutes
#   bench/run.sh a b             only these scenarios
#   bench/run.sh --quick         listener and message counts / 10 (smoke run)
#   WC_BIN=/path/to/watercooler bench/run.sh a g
#                                that server binary instead of building one
#
# Builds the release server (unless WC_BIN names one) and loadgen, installs
# nginx + libnginx-mod-nchan with apt-get if missing, starts a fresh server
# for every scenario (loopback only, server pinned to core 0, loadgen to
# core 1; f runs 1,000 then 100 listeners on one cluster, recorded as f and
# f100; r, watercooler only, runs five rooms configurations recorded as r1,
# r1000, r10, r1000one and r1000all; h, watercooler only, runs SSE over
# HTTP/2 and over TLS HTTP/1.1, recorded as servers watercooler-h2 and
# watercooler-h1; l, watercooler only, runs --fsync always, batch, off and
# --data none one after another, then times a start with a full log, see
# scenario_l; m, watercooler only, runs 3 and 8 nodes as a mesh and on one
# redis-server, see scenario_m; t, watercooler only, runs 3 nodes as a mesh
# with TLS links and with `link_tls = off`, see scenario_t; w and w-small,
# watercooler only and never run by default, are a million and 100,000 idle
# listeners on one --workers node, see scenario_w), prints one table and
# appends the raw loadgen JSON lines to bench/results/DATE.jsonl. Latency
# counts from each message's due time. Every node but l's runs with --data
# none (memory only, as before issue 15).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH="$ROOT/bench"
WC=${WC_BIN:-"$ROOT/target/release/watercooler"}
WC_SRC= # the WC_BIN binary's absolute path, recorded with the run
LG="$ROOT/loadgen/target/release/loadgen"
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}

SCALE=1
SCENARIOS=()
for arg in "$@"; do
    case "$arg" in
        --quick) SCALE=10 ;;
        a|b|c|d|e|f|g|h|r|l|m|t|w|w-small) SCENARIOS+=("$arg") ;;
        -h|--help) sed -n 2,29p "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $arg (scenarios a-h, r, l, m, t, w and w-small, --quick)" >&2; exit 2 ;;
    esac
done
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=(a b c d e f g h r l m t) # w, w-small: only when named

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
n() { local v=$(( $1 / SCALE )); [ "$v" -lt "${2:-1}" ] && v=${2:-1}; echo "$v"; }

# ---------------------------------------------------------------- setup ----
for tool in cargo curl jq python3 taskset openssl; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

if [ -n "${WC_BIN:-}" ]; then
    [ -x "$WC" ] || die "WC_BIN=$WC is not an executable"
    WC=$(realpath "$WC")
    WC_SRC=$WC
    log "server binary from WC_BIN: $WC (not building)"
else
    log "building the release server"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
fi
log "building loadgen"
cargo build --release --quiet --manifest-path "$ROOT/loadgen/Cargo.toml" || die "loadgen build failed"

NCHAN_SO=/usr/lib/nginx/modules/ngx_nchan_module.so
if ! command -v nginx >/dev/null || [ ! -f "$NCHAN_SO" ]; then
    [ "$(id -u)" -eq 0 ] || die "nginx + libnginx-mod-nchan missing and not root to install them"
    log "installing nginx + libnginx-mod-nchan"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
fi
NGINX=$(command -v nginx)

WORK=$(mktemp -d /tmp/watercooler-bench.XXXXXX)
# Run copies, so that a rebuild elsewhere during the run changes nothing here.
cp "$WC" "$WORK/watercooler"; WC="$WORK/watercooler"
cp "$LG" "$WORK/loadgen"; LG="$WORK/loadgen"
PIDS=()
stop_all() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
CLEAN=() # more directories to remove at exit (scenario l's logs)
cleanup() { stop_all; rm -rf "$WORK" "${CLEAN[@]}"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$BENCH/results"
RUN_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RESULTS="$BENCH/results/$(date -u +%Y-%m-%d).jsonl"
RUN_ID="$RUN_DATE-$$"
NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
ulimit -n "$NOFILE" 2>/dev/null || true

# A self-signed P-256 certificate, used by both servers in the TLS scenario.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null \
    || die "openssl could not make a certificate"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo null; }

record() { # record SCENARIO SERVER JSON-OBJECT : one line in the results file
    jq -c --arg run "$RUN_ID" --arg date "$RUN_DATE" --arg s "$1" --arg srv "$2" \
        --argjson quick "$([ $SCALE -gt 1 ] && echo true || echo false)" \
        --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '{run:$run, date:$date, scenario:$s, server:$srv, quick:$quick, loadavg:$load} + .' <<<"$3" >>"$RESULTS"
}

# -------------------------------------------------------------- servers ----
# start_wc NAME [flags...]: a fresh watercooler on free ports, pinned to core
# SERVER_CPU; sets WC_PID, WC_HTTP, WC_HTTPS (base URLs) and WC_CLUSTER.
# Builds from before the publish limit (issue 16) lack --publish-rate: give
# it only to those that have it (loadgen publishes fast from one address).
# Builds with the durable history (issue 15) keep a log by default, in
# ./watercooler-data/NAME, fsynced once per turn: every node runs with
# --data none (memory only, as the earlier results did, and no run loads the
# previous one's messages); scenario l gives --data DIR after these flags.
WC_LIMITS=()
if "$WC" --help 2>/dev/null | grep -q -- '--publish-rate'; then
    WC_LIMITS=(--publish-rate 0)
fi
if "$WC" --help 2>/dev/null | grep -q -- '--data DIR'; then
    WC_LIMITS+=(--data none)
fi

start_wc() {
    local name=$1; shift
    taskset -c "$SERVER_CPU" "$WC" --bind 127.0.0.1 --port 0 --secure-port 0 --log warn "${WC_LIMITS[@]}" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.err" &
    WC_PID=$!
    PIDS+=("$WC_PID")
    for _ in $(seq 150); do
        grep -q '^listening on https://' "$WORK/$name.out" 2>/dev/null && break
        kill -0 "$WC_PID" 2>/dev/null || die "$name exited: $(cat "$WORK/$name.err")"
        sleep 0.1
    done
    WC_HTTP=$(sed -n 's#^listening on \(http://.*\)#\1#p' "$WORK/$name.out" | head -1)
    WC_HTTPS=$(sed -n 's#^listening on \(https://.*\)#\1#p' "$WORK/$name.out" | head -1)
    [ -n "$WC_HTTP" ] && [ -n "$WC_HTTPS" ] || die "$name printed no listening lines"
}

# start_nchan: a fresh nginx (master + one worker) with its own prefix; sets
# NX_PID (the worker, which holds every connection), NX_HTTP, NX_HTTPS.
start_nchan() {
    local prefix="$WORK/nginx" hp sp master
    rm -rf "$prefix"; mkdir -p "$prefix"
    hp=$(free_port); sp=$(free_port)
    sed -e "s#@PREFIX@#$prefix#g" -e "s#@NOFILE@#$NOFILE#g" \
        -e "s#@HTTP_PORT@#$hp#g" -e "s#@HTTPS_PORT@#$sp#g" \
        -e "s#@CERT@#$WORK/cert.pem#g" -e "s#@KEY@#$WORK/key.pem#g" \
        "$BENCH/nchan.conf.template" >"$prefix/nginx.conf"
    taskset -c "$SERVER_CPU" "$NGINX" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
        -g 'daemon off;' >"$prefix/stdout" 2>&1 &
    master=$!
    PIDS+=("$master")
    NX_PID=
    for _ in $(seq 100); do
        NX_PID=$(pgrep -P "$master" | head -1 || true)
        [ -n "$NX_PID" ] && curl -s -o /dev/null "http://127.0.0.1:$hp/ping" && break
        kill -0 "$master" 2>/dev/null || die "nginx exited: $(cat "$prefix/error.log" "$prefix/stdout")"
        sleep 0.1
    done
    [ -n "$NX_PID" ] || die "nginx started no worker"
    PIDS+=("$NX_PID")
    NX_HTTP="http://127.0.0.1:$hp"
    NX_HTTPS="https://127.0.0.1:$sp"
}

# start_cluster K [BUS-URL]: K watercooler nodes from one cluster file on
# free ports, all started together; waits until each /cluster lists K nodes.
# Without BUS-URL a full mesh (sys.conf: `nodes` and a `cookie`); with one
# (redis://…) the file is `bus = BUS-URL` and the nodes find each other
# through it. CLUSTER_EXTRA, when set, is appended to the file as lines (for
# example `link_tls = off`, scenario t). Sets NODE_PID[], NODE_HTTP[],
# NODE_HTTPS[] (1-based), LINK_PORTS (the mesh's link ports, space-separated;
# empty with a bus) and CLUSTER_LINK_MS (from every node listening to every
# /cluster full).
start_cluster() {
    local k=$1 bus=${2:-} i port entries=() conf="$WORK/sys.conf" suffix=@127.0.0.1
    LINK_PORTS=
    if [ -n "$bus" ]; then
        suffix=
        printf 'bus = %s\nsync_nodes_timeout = 5000\n' "$bus" >"$conf"
    else
        for i in $(seq "$k"); do
            port=$(free_port)
            entries+=("node$i@127.0.0.1:$port")
            LINK_PORTS+="${LINK_PORTS:+ }$port"
        done
        {
            echo "nodes = $(IFS=,; echo "${entries[*]}" | sed 's/,/, /g')"
            echo "sync_nodes_timeout = 5000"
            echo "cookie = bench-$RANDOM$RANDOM"
        } >"$conf"
    fi
    if [ -n "${CLUSTER_EXTRA:-}" ]; then printf '%s\n' "$CLUSTER_EXTRA" >>"$conf"; fi
    NODE_PID=(); NODE_HTTP=(); NODE_HTTPS=()
    for i in $(seq "$k"); do
        taskset -c "$SERVER_CPU" "$WC" --bind 127.0.0.1 --port 0 --secure-port 0 --log warn \
            --name "node$i$suffix" --config "$conf" "${WC_LIMITS[@]}" >"$WORK/node$i.out" 2>"$WORK/node$i.err" &
        NODE_PID[$i]=$!
        PIDS+=("$!")
    done
    for i in $(seq "$k"); do
        for _ in $(seq 200); do
            grep -q '^listening on https://' "$WORK/node$i.out" 2>/dev/null && break
            kill -0 "${NODE_PID[$i]}" 2>/dev/null || die "node$i exited: $(cat "$WORK/node$i.err")"
            sleep 0.1
        done
        NODE_HTTP[$i]=$(sed -n 's#^listening on \(http://.*\)#\1#p' "$WORK/node$i.out" | head -1)
        NODE_HTTPS[$i]=$(sed -n 's#^listening on \(https://.*\)#\1#p' "$WORK/node$i.out" | head -1)
        [ -n "${NODE_HTTP[$i]}" ] || die "node$i printed no listening line"
    done
    local t0=$SECONDS ok ns0; ns0=$(date +%s%N)
    while :; do
        ok=0
        for i in $(seq "$k"); do
            local c
            c=$(curl -s -m 2 "${NODE_HTTP[$i]}/cluster" | jq '.nodes | length' 2>/dev/null || echo 0)
            [ "${c:-0}" -ge "$k" ] && ok=$((ok + 1))
        done
        [ "$ok" -eq "$k" ] && break
        [ $((SECONDS - t0)) -gt 30 ] && die "the cluster did not link within 30 s"
        sleep 0.2
    done
    CLUSTER_LINK_MS=$(( ($(date +%s%N) - ns0) / 1000000 ))
    log "cluster of $k linked in $((SECONDS - t0)) s"
}

# -------------------------------------------------------------- loadgen ----
# loadgen SCENARIO SERVER [loadgen flags...]: runs loadgen pinned to core
# LOADGEN_CPU, records its JSON line (or the failure) and echoes a summary.
loadgen() {
    local scen=$1 srv=$2; shift 2
    local out="$WORK/lg-$scen-$srv"
    log "($scen) $srv: loadgen $*"
    local rc=0
    timeout "${W_TIMEOUT:-900}" taskset -c "$LOADGEN_CPU" "$LG" --json-only --deadline-s 800 "$@" \
        >"$out.out" 2>"$out.err" || rc=$?
    local json
    json=$(sed -n 's/^JSON //p' "$out.out" | tail -1)
    if [ -z "$json" ]; then
        local why
        why=$(tail -c 300 "$out.err" | tr '\n' ' ')
        log "($scen) $srv: loadgen failed (exit $rc): $why"
        record "$scen" "$srv" "$(jq -nc --arg e "loadgen exit $rc: $why" '{error:$e}')"
        return 0
    fi
    [ -s "$out.err" ] && log "($scen) $srv: loadgen said: $(head -c 300 "$out.err" | tr '\n' ' ')"
    record "$scen" "$srv" "$json"
    jq -r '"  connected \(.listeners_connected)/\(.listeners_requested) in \(.connect_time_s) s, published \(.published)/\(.offered) at \(.publish_rate_achieved)/s (late p99 \(.publish_late_p99_ms) ms), lost \(.lost), p50 \(.latency_p50_ms) ms, p99 \(.latency_p99_ms) ms from due (first delivery p99 \(.first_delivery_p99_ms) ms, spread p99 \(.spread_p99_ms) ms), \(.deliveries_per_s) deliveries/s, RSS/listener \(.rss_per_listener_bytes) B"' <<<"$json" >&2
}

not_applicable() { record "$1" "$2" "$(jq -nc --arg r "$3" '{na:$r}')"; log "($1) $2: n/a ($3)"; }

server_errors() { # after a run: a server's stderr, if it logged anything
    local f=$1
    [ -s "$f" ] && log "server log $(basename "$f"): $(head -c 400 "$f" | tr '\n' ' ')"
    return 0
}

# ------------------------------------------------------------- scenarios ----
node_idle() {
    start_wc idle; sleep 1
    local wc_rss; wc_rss=$(rss_kib "$WC_PID"); stop_all
    start_nchan; sleep 1
    local nx_rss; nx_rss=$(rss_kib "$NX_PID"); stop_all
    local size; size=$(stat -c %s "$WC")
    record node watercooler "$(jq -nc --argjson rss "$wc_rss" --argjson size "$size" --argjson idle "$idle" \
        --arg bin "${WC_SRC:-}" \
        '{idle_rss_kib:$rss, binary_bytes:$size, cpu_idle_pct_before:$idle} + (if $bin == "" then {} else {wc_bin:$bin} end)')"
    record node nchan "{\"idle_rss_kib\":$nx_rss}"
    log "idle node RSS: watercooler $wc_rss KiB, nginx worker $nx_rss KiB; binary $size bytes"
}

# pair SCENARIO WC-LISTEN-PATH-SCHEME MESSAGES RATE LISTENERS [extra loadgen flags]
# runs one loadgen configuration against a fresh watercooler and a fresh nchan.
pair() {
    local scen=$1 scheme=$2 listeners=$3 messages=$4 rate=$5; shift 5
    local wc_flags=()
    [ "$scheme" = https ] && wc_flags=(--cert "$WORK/cert.pem" --key "$WORK/key.pem")
    start_wc "$scen" "${wc_flags[@]}"
    local base=$WC_HTTP; [ "$scheme" = https ] && base=$WC_HTTPS
    loadgen "$scen" watercooler --mode watercooler --listen "$base/listen" --publish "$WC_HTTP/publish" \
        --listeners "$listeners" --messages "$messages" --rate "$rate" --server-pid "$WC_PID" "$@"
    server_errors "$WORK/$scen.err"
    stop_all
    start_nchan
    base=$NX_HTTP; [ "$scheme" = https ] && base=$NX_HTTPS
    loadgen "$scen" nchan --mode nchan --listen "$base/sub" --publish "$NX_HTTP/pub" \
        --listeners "$listeners" --messages "$messages" --rate "$rate" --server-pid "$NX_PID" "$@"
    server_errors "$WORK/nginx/error.log"
    stop_all
}

scenario_a() { pair a http "$(n 1000)" "$(n 200 20)" 100; }
scenario_b() { pair b http "$(n 10000)" "$(n 100 20)" 20 --drain-timeout-s 30; }
scenario_c() { pair c http "$(n 19000)" "$(n 20 5)" 2 --idle-s 3 --connect-timeout-s 120; }
scenario_e() { pair e https "$(n 5000)" "$(n 200 20)" 100 --idle-s 3 --connect-timeout-s 120; }
# (g) overload, issue 11: a million deliveries/s offered (10,000 listeners x
# 100 messages/s) from 10 publisher connections, message i on connection
# i % 10, one request in flight on each. Bounded: no message leaves later
# than 20 s after the last was due (those left are reported as not sent),
# then at most 60 s of draining.
scenario_g() {
    pair g http "$(n 10000)" "$(n 1000 100)" 100 --publishers 10 --publish-grace-s 20 \
        --drain-timeout-s 60 --idle-s 1
}

scenario_d() {
    start_cluster 3
    local listen=() pids=() i
    for i in 1 2 3; do listen+=(--listen "${NODE_HTTP[$i]}/listen"); pids+=(--server-pid "${NODE_PID[$i]}"); done
    loadgen d watercooler --mode watercooler "${listen[@]}" --publish "${NODE_HTTP[1]}/publish" \
        --listeners "$(n 50000)" --messages "$(n 20 5)" --rate 2 "${pids[@]}" \
        --idle-s 3 --connect-timeout-s 180 --drain-timeout-s 30
    for i in 1 2 3; do server_errors "$WORK/node$i.err"; done
    stop_all
    not_applicable d nchan "50,000 listeners need 3 processes under the $NOFILE-fd limit: one nginx worker cannot hold them, and nchan has no multi-node mode without Redis"
}

# cross_node SCENARIO LISTENERS: listeners on node2, publishing on node1.
cross_node() {
    loadgen "$1" watercooler --mode watercooler --listen "${NODE_HTTP[2]}/listen" \
        --publish "${NODE_HTTP[1]}/publish" --listeners "$2" --messages "$(n 200 20)" \
        --rate 100 --server-pid "${NODE_PID[1]}" --server-pid "${NODE_PID[2]}"
}

# (f) twice on one cluster: 1,000 listeners, then 100 (recorded as f100), so
# that the fan-out's share of the latency shows next to the cross-node hop.
scenario_f() {
    start_cluster 2
    cross_node f "$(n 1000)"
    sleep 1 # node2 closes the first run's listeners before the second connects
    cross_node f100 "$(n 100 10)"
    server_errors "$WORK/node1.err"; server_errors "$WORK/node2.err"
    stop_all
    not_applicable f nchan "a single nchan instance has no second node"
    not_applicable f100 nchan "a single nchan instance has no second node"
}

# (r) rooms, issue 13: 1,000 rooms x 10 listeners against 1 room x 10,000
# listeners, the same messages per second in total (message i in room
# i % rooms, listener j in room j % rooms; each listener expects exactly its
# room's messages), each on a fresh node: server CPU per delivery and p99
# from the due time side by side. Then whether a message costs more when
# 999 other rooms exist: 1,000 rooms x 10 listeners with every message in
# one room, against that one room's 10 listeners alone (CPU per message);
# and 1,000 rooms x 10 listeners with the messages over all rooms at that
# rate, the same 10 deliveries per message as the room alone.
# Watercooler only (nchan's channels are not compared here); a build
# without rooms (no --max-rooms) is recorded as n/a. The heartbeat is set
# past the run so idle rooms' heartbeats (per listener, not per message)
# stay out of the CPU figures.
R_RATE=${R_RATE:-20}       # messages/s in total, rooms and single room alike
R_SECONDS=${R_SECONDS:-10}
R_ONE_RATE=${R_ONE_RATE:-200} # the one-busy-room comparison: messages/s
rooms_run() { # rooms_run SCENARIO ROOMS PUBLISH-ROOMS LISTENERS MESSAGES RATE
    local scen=$1 rooms=$2 prooms=$3 listeners=$4 messages=$5 rate=$6
    start_wc "$scen" --max-rooms 2000 --heartbeat-ms 600000
    loadgen "$scen" watercooler --mode watercooler --listen "$WC_HTTP/r/{room}/listen" \
        --publish "$WC_HTTP/r/{room}/publish" --rooms "$rooms" --publish-rooms "$prooms" \
        --listeners "$listeners" --messages "$messages" --rate "$rate" --server-pid "$WC_PID" \
        --idle-s 1 --drain-timeout-s 30 --connect-timeout-s 120
    server_errors "$WORK/$scen.err"
    stop_all
}
scenario_r() {
    if ! "$WC" --help 2>&1 | grep -q -- --max-rooms; then
        local s
        for s in r1 r1000 r10 r1000one r1000all; do not_applicable "$s" watercooler "this build has no rooms"; done
        return 0
    fi
    local m=$(( R_RATE * R_SECONDS )) m1=$(( R_ONE_RATE * R_SECONDS ))
    rooms_run r1 1 1 "$(n 10000)" "$(n "$m" 20)" "$R_RATE"
    rooms_run r1000 "$(n 1000)" "$(n 1000)" "$(n 10000)" "$(n "$m" 20)" "$R_RATE"
    rooms_run r10 1 1 10 "$(n "$m1" 20)" "$R_ONE_RATE"
    rooms_run r1000one "$(n 1000)" 1 "$(n 10000)" "$(n "$m1" 20)" "$R_ONE_RATE"
    rooms_run r1000all "$(n 1000)" "$(n 1000)" "$(n 10000)" "$(n "$m1" 20)" "$R_ONE_RATE"
}

# (h) SSE over HTTP/2, issue 12: 5,000 listeners as 50 TLS connections x
# 100 streams (ALPN h2) against 5,000 TLS HTTP/1.1 listeners, the same
# messages, each on a fresh node: RSS per listener, server CPU per delivery,
# p99 from the due time and loss side by side. Watercooler only (nchan's SSE
# over HTTP/2 is broken, nchan#576). No publish rate limit and no backlog, so
# that every listener gets exactly the run's messages.
H_CONNS=${H_CONNS:-50}
H_STREAMS=${H_STREAMS:-100}
H_MESSAGES=${H_MESSAGES:-100}
H_RATE=${H_RATE:-20}
h_run() { # h_run SERVER-LABEL [loadgen flags...]
    local srv=$1; shift
    start_wc "h-$srv" --cert "$WORK/cert.pem" --key "$WORK/key.pem" --publish-rate 0 --backlog 0
    loadgen h "$srv" --mode watercooler --listen "$WC_HTTPS/listen" --publish "$WC_HTTP/publish" \
        --listeners "$(n $((H_CONNS * H_STREAMS)) "$H_STREAMS")" --messages "$(n "$H_MESSAGES" 20)" \
        --rate "$H_RATE" --server-pid "$WC_PID" --idle-s 3 --connect-timeout-s 120 \
        --drain-timeout-s 30 "$@"
    server_errors "$WORK/h-$srv.err"
    stop_all
}
scenario_h() {
    h_run watercooler-h2 --h2 --streams-per-conn "$H_STREAMS"
    h_run watercooler-h1
}

# (l) durable history, issue 15: publishes/s and publish→deliver latency
# with --fsync always, batch, off and --data none (memory only), one after
# another in this run, each on a fresh node with a fresh log directory
# (removed after its mode), the same load for all: L_LISTENERS listeners in
# the lobby, L_PUBLISHERS publisher connections (one request in flight
# each). Two runs per node: first L_RATE messages/s for L_SECONDS (a rate
# `always` keeps up with on a disk that syncs in well under a millisecond:
# latency from the due time), then L_SAT_RATE/s for L_SAT_SECONDS (far above
# what `always` can do; what is not sent within 2 s of the last due time is
# reported as not sent): acknowledged publishes/s, and latency from the
# send time (from the due time it would only measure the queue). Log
# commits per run from /metrics (publishes per commit: batch batching).
# Before the modes, one thread's write+fdatasync rate on the same directory
# (durable.py probe): the ceiling for `always`. Then start-up: a log filled
# with L_FILL messages (loadgen, --fsync off, --history L_FILL so that
# retention keeps them all), the node stopped, and the time from process
# start to GET /healthz 200, L_STARTS times each for an empty log, the full
# log with the default --history 1000 --history-mb 64 (every record is read
# and 1,000 lobby messages kept), and the full log with --history L_FILL
# --history-mb 512 (all kept); RSS right after. The page cache is warm (the
# log was just written): not a cold-disk start. The logs go under L_DATA
# (default: this run's temp dir, or target/ when that is tmpfs); the
# filesystem is recorded. --backlog 0: new streams get no old messages.
L_LISTENERS=${L_LISTENERS:-10}
L_PUBLISHERS=${L_PUBLISHERS:-32}
L_RATE=${L_RATE:-1000}
L_SECONDS=${L_SECONDS:-3}
L_SAT_RATE=${L_SAT_RATE:-100000}
L_SAT_SECONDS=${L_SAT_SECONDS:-1}
L_FILL=${L_FILL:-100000}
L_STARTS=${L_STARTS:-3}

wc_metric() { # wc_metric NAME: one value from the running node's /metrics, or null
    curl -s -m 5 "$WC_HTTP/metrics" | awk -v m="$1" '$1 == m {v = $2} END {print (v == "" ? "null" : v)}'
}

l_data_root() { # sets L_ROOT (a fresh directory on a real disk), L_FS, L_SRC
    local base=${L_DATA:-$WORK} fs
    mkdir -p "$base"
    fs=$(findmnt -n -o FSTYPE -T "$base")
    if [ -z "${L_DATA:-}" ] && { [ "$fs" = tmpfs ] || [ "$fs" = ramfs ]; }; then
        log "(l) $base is on $fs: the logs go under $ROOT/target instead"
        base="$ROOT/target"
    fi
    L_ROOT=$(mktemp -d "$base/watercooler-bench-l.XXXXXX")
    CLEAN+=("$L_ROOT")
    L_FS=$(findmnt -n -o FSTYPE -T "$L_ROOT")
    L_SRC=$(findmnt -n -o SOURCE -T "$L_ROOT")
    case "$L_FS" in tmpfs|ramfs) log "(l) warning: $L_ROOT is on $L_FS: fdatasync costs nothing there" ;; esac
    log "(l) logs under $L_ROOT ($L_FS on $L_SRC)"
}

l_mode() { # l_mode always|batch|off|memory
    local m=$1 dir="$L_ROOT/$1" flags kind c0 c1
    if [ "$m" = memory ]; then flags=(--data none); else flags=(--data "$dir" --fsync "$m"); fi
    start_wc "l-$m" "${flags[@]}" --backlog 0
    for kind in lrate lsat; do
        c0=$(wc_metric 'watercooler_log_commits_total{outcome="ok"}')
        if [ "$kind" = lrate ]; then
            loadgen "lrate-$m" watercooler --mode watercooler --listen "$WC_HTTP/listen" \
                --publish "$WC_HTTP/publish" --listeners "$L_LISTENERS" --publishers "$L_PUBLISHERS" \
                --messages "$(n $((L_RATE * L_SECONDS)) 100)" --rate "$L_RATE" --publish-grace-s 10 \
                --server-pid "$WC_PID" --idle-s 1 --drain-timeout-s 10
        else
            loadgen "lsat-$m" watercooler --mode watercooler --listen "$WC_HTTP/listen" \
                --publish "$WC_HTTP/publish" --listeners "$L_LISTENERS" --publishers "$L_PUBLISHERS" \
                --messages "$(n $((L_SAT_RATE * L_SAT_SECONDS)) 1000)" --rate "$L_SAT_RATE" \
                --publish-grace-s 2 --server-pid "$WC_PID" --idle-s 1 --drain-timeout-s 10
        fi
        c1=$(wc_metric 'watercooler_log_commits_total{outcome="ok"}')
        record "$kind-$m" log "$(jq -nc --arg m "$m" --arg fs "$L_FS" --argjson c0 "$c0" --argjson c1 "$c1" \
            '{fsync: $m, fstype: (if $m == "memory" then null else $fs end),
              commits: (if $c0 == null or $c1 == null then null else $c1 - $c0 end)}')"
    done
    server_errors "$WORK/l-$m.err"
    stop_all
    rm -rf "$dir"
}

l_start() { # l_start LABEL FLAGS-TEXT COMMAND...: durable.py start, recorded as lstart LABEL
    local label=$1 text=$2 out; shift 2
    log "(l) start-up, $label: $text"
    if out=$(timeout 300 python3 "$BENCH/durable.py" start "$L_STARTS" -- "$@" 2>"$WORK/lstart.err"); then
        record lstart "$label" "$(jq -c --arg f "$text" '{flags: $f} + .' <<<"$out")"
        jq -r '"  to /healthz 200: \(.start_ms | map(tostring) | join(", ")) ms; RSS \(.rss_kib | max) KiB (peak \(.hwm_kib | max)); \(.loaded_records) records loaded, \(.history_messages) messages held; \(.loaded_line)"' <<<"$out" >&2
    else
        log "(l) start-up, $label failed: $(tail -c 300 "$WORK/lstart.err")"
        record lstart "$label" "$(jq -nc --arg e "$(tail -c 300 "$WORK/lstart.err")" '{error: $e}')"
    fi
}

scenario_l() {
    if ! "$WC" --help 2>&1 | grep -q -- '--fsync'; then
        not_applicable lsat-always watercooler "this build has no durable history"
        return 0
    fi
    l_data_root
    local probe
    probe=$(taskset -c "$SERVER_CPU" python3 "$BENCH/durable.py" probe "$L_ROOT" 2)
    record ldisk probe "$(jq -c --arg fs "$L_FS" --arg src "$L_SRC" --arg d "$L_ROOT" \
        '{fstype: $fs, source: $src, dir: $d} + .' <<<"$probe")"
    jq -r '"  one thread, write+fdatasync: \(.syncs_per_s)/s, p50 \(.sync_p50_ms) ms, p99 \(.sync_p99_ms) ms, \(.sync_cpu_us) µs CPU each"' <<<"$probe" >&2
    local m
    for m in always batch off memory; do l_mode "$m"; done

    # Start-up with a full log.
    local full="$L_ROOT/full" fill; fill=$(n "$L_FILL" 1000)
    start_wc l-fill --data "$full" --fsync off --history "$fill" --history-mb 512 --backlog 0
    loadgen lfill watercooler --mode watercooler --listen "$WC_HTTP/listen" --publish "$WC_HTTP/publish" \
        --listeners 1 --publishers "$L_PUBLISHERS" --messages "$fill" --rate 100000 \
        --publish-grace-s 60 --drain-timeout-s 30 --server-pid "$WC_PID"
    server_errors "$WORK/l-fill.err"
    stop_all
    record lfill log "$(jq -nc --argjson b "$(du -sb "$full" | cut -f1)" \
        --argjson s "$(find "$full" -name '*.log' | wc -l)" '{log_bytes: $b, segments: $s}')"
    local cmd=(taskset -c "$SERVER_CPU" "$WC" --bind 127.0.0.1 --secure-port 0 --log info "${WC_LIMITS[@]}")
    l_start empty "empty log" "${cmd[@]}" --data "$L_ROOT/empty"
    l_start full "$fill messages, default --history 1000 --history-mb 64" "${cmd[@]}" --data "$full"
    l_start full-all "$fill messages, --history $fill --history-mb 512" "${cmd[@]}" --data "$full" \
        --history "$fill" --history-mb 512
    rm -rf "$L_ROOT"
}

# (m) mesh against Redis, issue 14: cross-node publish → deliver latency and
# deliveries/s with the nodes linked as a full mesh (sys.conf: `nodes` +
# `cookie`) and with the same nodes on one redis-server (`bus =
# redis://…`), at M_NODES nodes (3 and 8), M_ROUNDS rounds in one run, the
# two buses alternating (round 1 mesh first, round 2 Redis first, …). Each
# configuration is a fresh cluster (and a fresh redis-server on a free port,
# `--save '' --appendonly no`, in this run's temp dir, stopped by PID with
# the nodes). Every node and redis-server are pinned to SERVER_CPU (so they
# share one core: with 8 nodes + Redis they contend for it), loadgen to
# LOADGEN_CPU. Publishes go to node1 and the listeners are on the other
# nodes only (M_PER_NODE each, round-robin), so every delivery crossed the
# bus (loadgen has no per-URL split, so a listener on node1 would mix local
# deliveries in). Two runs per cluster: M_RATE messages/s for M_SECONDS
# (latency from the due time), then saturation, M_SAT_RATE/s offered for
# M_SAT_SECONDS over M_SAT_PUBLISHERS connections to M_SAT_PER_NODE
# listeners per node (what is not sent within 2 s of the last due time is
# not sent; latency from the send time). While the first run's listeners
# connect, each node's /cluster is polled until it counts them all
# (presence through the bus). --server-pid: every node, and redis-server.
M_NODES=${M_NODES:-"3 8"}
M_ROUNDS=${M_ROUNDS:-2}
M_PER_NODE=${M_PER_NODE:-20}
M_RATE=${M_RATE:-500}
M_SECONDS=${M_SECONDS:-5}
M_SAT_RATE=${M_SAT_RATE:-100000}
M_SAT_SECONDS=${M_SAT_SECONDS:-1}
M_SAT_PUBLISHERS=${M_SAT_PUBLISHERS:-32}
M_SAT_PER_NODE=${M_SAT_PER_NODE:-1}
REDIS_CPU=${REDIS_CPU:-$SERVER_CPU}

# start_redis: a fresh redis-server on a free port, memory only; sets
# REDIS_PID, REDIS_PORT.
start_redis() {
    local dir="$WORK/redis-$RANDOM"
    mkdir -p "$dir"
    REDIS_PORT=$(free_port)
    taskset -c "$REDIS_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$dir" --logfile "$dir/redis.log" --daemonize no \
        >"$dir/stdout" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 100); do
        [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
        kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited: $(cat "$dir/redis.log" "$dir/stdout")"
        sleep 0.05
    done
    die "redis-server did not answer PING within 5 s"
}

task_cpu_s() { # task_cpu_s PID: seconds on CPU, all threads (schedstat)
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ns += $1} END {printf "%.3f", ns / 1e9}'
}

m_config() { # m_config N mesh|redis
    local k=$1 bus=$2 i listen=() pids=() urls=() url= t0 form_ms
    if [ "$bus" = redis ]; then start_redis; url="redis://127.0.0.1:$REDIS_PORT"; fi
    t0=$(date +%s%N)
    start_cluster "$k" $url
    form_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    for i in $(seq "$k"); do
        urls+=("${NODE_HTTP[$i]}"); pids+=(--server-pid "${NODE_PID[$i]}")
        if [ "$i" -gt 1 ]; then listen+=(--listen "${NODE_HTTP[$i]}/listen"); fi
    done
    if [ "$bus" = redis ]; then pids+=(--server-pid "$REDIS_PID"); fi
    local per; per=$(n "$M_PER_NODE")
    local expected=$(( per * (k - 1) )) stop="$WORK/m-stop" watch
    rm -f "$stop"
    python3 "$BENCH/mesh_redis.py" watch "$expected" 20 "$stop" "${urls[@]}" >"$WORK/m-watch" &
    watch=$!
    loadgen "m$k-rate" "$bus" --mode watercooler "${listen[@]}" --publish "${NODE_HTTP[1]}/publish" \
        --listeners "$expected" --messages "$(n $((M_RATE * M_SECONDS)) 100)" --rate "$M_RATE" \
        "${pids[@]}" --idle-s 3 --publish-grace-s 5 --drain-timeout-s 10
    touch "$stop"; wait "$watch" || true
    sleep 1 # the nodes close the first run's listeners before the second connects
    loadgen "m$k-sat" "$bus" --mode watercooler "${listen[@]}" --publish "${NODE_HTTP[1]}/publish" \
        --listeners $(( M_SAT_PER_NODE * (k - 1) )) --publishers "$M_SAT_PUBLISHERS" \
        --messages "$(n $((M_SAT_RATE * M_SAT_SECONDS)) 1000)" --rate "$M_SAT_RATE" \
        "${pids[@]}" --idle-s 1 --publish-grace-s 2 --drain-timeout-s 10
    local info metrics redis='{}'
    metrics=$(python3 "$BENCH/mesh_redis.py" metrics "${urls[@]}")
    if [ "$bus" = redis ]; then
        redis=$(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | awk -F'[:,=]' '
            /^cmdstat_/ {sub("cmdstat_", "", $1); calls[$1] = $3; n += $3}
            END {printf "{\"redis_total_commands\":%d,\"redis_calls\":{", n; s = "";
                 for (c in calls) {printf "%s\"%s\":%d", s, c, calls[c]; s = ","}; printf "}}"}')
        redis=$(jq -c --argjson cpu "$(task_cpu_s "$REDIS_PID")" '. + {redis_cpu_s: $cpu}' <<<"$redis")
    fi
    info=$(jq -sc --argjson form "$form_ms" --argjson link "$CLUSTER_LINK_MS" \
        '.[0] + .[1] + .[2] + {cluster_formed_ms: $form, linked_after_listening_ms: $link}' \
        "$WORK/m-watch" <(echo "$metrics") <(echo "$redis"))
    record "m$k-info" "$bus" "$info"
    jq -r '"  presence: \(if .presence_converged then "every node counted \(.presence_expected) listeners after \(.presence_full_s) s" else "NOT converged: saw \(.presence_last_seen) of \(.presence_expected)" end); cluster formed in \(.cluster_formed_ms) ms (\(.linked_after_listening_ms) ms after every node listened); data lost \(.bus_data_lost_total), bus reconnects \(.bus_reconnects_total), peer reconnects \(.peer_reconnects_total), slow listeners evicted \(.slow_listeners_evicted_total), max behind \(.bus_behind_seconds) s\(if .redis_calls then "; Redis calls \(.redis_calls)" else "" end)"' <<<"$info" >&2
    for i in $(seq "$k"); do server_errors "$WORK/node$i.err"; done
    stop_all
}

scenario_m() {
    if ! "$WC" --help 2>&1 | grep -q -- '--data' || ! command -v redis-server >/dev/null \
        || ! command -v redis-cli >/dev/null; then
        not_applicable m3-rate redis "no redis-server/redis-cli, or a build before the Redis bus"
        return 0
    fi
    local round k
    for round in $(seq "$M_ROUNDS"); do
        for k in $M_NODES; do
            if [ $((round % 2)) -eq 1 ]; then m_config "$k" mesh; m_config "$k" redis
            else m_config "$k" redis; m_config "$k" mesh; fi
        done
    done
}

# (t) TLS links against clear links, issue 16: cross-node publish → deliver
# latency, publishes/s at saturation and server CPU per message with the
# mesh's links over TLS 1.3 (the default) and in clear text (`link_tls = off`
# in the cluster file), T_NODES (3) nodes, T_ROUNDS rounds in one run, the
# two alternating (round 1 TLS first, round 2 clear first, …). Scenario m's
# machinery: a fresh full-mesh cluster per configuration (start_cluster, the
# same file but for that one line), every node on SERVER_CPU, loadgen on
# LOADGEN_CPU; publishes on node1, listeners only on the other nodes
# (round-robin), so every delivery crossed a link. Two runs per cluster:
# T_RATE messages/s for T_SECONDS to T_PER_NODE listeners per node (latency
# from the due time), then saturation, T_SAT_RATE/s offered for
# T_SAT_SECONDS over T_SAT_PUBLISHERS connections to T_SAT_PER_NODE
# listeners per node (what is not sent within 2 s of the last due time is
# not sent; latency from the send time). --server-pid every node: loadgen's
# server CPU is the nodes' CPU summed over publish + drain, per message
# acknowledged. Around the saturation run, the bytes sent on the links
# (`ss`, both ends of every established link socket: TLS records against
# clear frames) and each node's CPU (publisher against receivers). A clear
# cluster's nodes each log the `link_tls = off` warning (counted, to show
# the setting took; a TLS cluster must log none).
T_NODES=${T_NODES:-3}
T_ROUNDS=${T_ROUNDS:-2}
T_PER_NODE=${T_PER_NODE:-20}
T_RATE=${T_RATE:-500}
T_SECONDS=${T_SECONDS:-5}
T_SAT_RATE=${T_SAT_RATE:-100000}
T_SAT_SECONDS=${T_SAT_SECONDS:-1}
T_SAT_PUBLISHERS=${T_SAT_PUBLISHERS:-32}
T_SAT_PER_NODE=${T_SAT_PER_NODE:-1}

link_bytes() { # bytes sent on the mesh's links so far (both ends of each, LINK_PORTS)
    local f= p
    for p in $LINK_PORTS; do f+="${f:+ or }sport = :$p or dport = :$p"; done
    [ -n "$f" ] || { echo null; return; }
    ss -tniOH state established "( $f )" 2>/dev/null \
        | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^bytes_sent:/) {split($i, a, ":"); s += a[2]}; n++}
               END {printf "{\"bytes\":%d,\"sockets\":%d}", s, n}'
}

t_config() { # t_config tls|clear
    local bus=$1 k=$T_NODES i listen=() pids=() urls=() t0 form_ms
    local CLUSTER_EXTRA=
    if [ "$bus" = clear ]; then CLUSTER_EXTRA='link_tls = off'; fi
    t0=$(date +%s%N)
    start_cluster "$k"
    form_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    for i in $(seq "$k"); do
        urls+=("${NODE_HTTP[$i]}"); pids+=(--server-pid "${NODE_PID[$i]}")
        if [ "$i" -gt 1 ]; then listen+=(--listen "${NODE_HTTP[$i]}/listen"); fi
    done
    local per; per=$(n "$T_PER_NODE")
    local expected=$(( per * (k - 1) )) stop="$WORK/t-stop" watch
    rm -f "$stop"
    python3 "$BENCH/mesh_redis.py" watch "$expected" 20 "$stop" "${urls[@]}" >"$WORK/t-watch" &
    watch=$!
    loadgen "t$k-rate" "$bus" --mode watercooler "${listen[@]}" --publish "${NODE_HTTP[1]}/publish" \
        --listeners "$expected" --messages "$(n $((T_RATE * T_SECONDS)) 100)" --rate "$T_RATE" \
        "${pids[@]}" --idle-s 3 --publish-grace-s 5 --drain-timeout-s 10
    touch "$stop"; wait "$watch" || true
    sleep 1 # the nodes close the first run's listeners before the second connects
    local b0 b1 c0=() c1=()
    b0=$(link_bytes)
    for i in $(seq "$k"); do c0[$i]=$(task_cpu_s "${NODE_PID[$i]}"); done
    loadgen "t$k-sat" "$bus" --mode watercooler "${listen[@]}" --publish "${NODE_HTTP[1]}/publish" \
        --listeners $(( T_SAT_PER_NODE * (k - 1) )) --publishers "$T_SAT_PUBLISHERS" \
        --messages "$(n $((T_SAT_RATE * T_SAT_SECONDS)) 1000)" --rate "$T_SAT_RATE" \
        "${pids[@]}" --idle-s 1 --publish-grace-s 2 --drain-timeout-s 10
    b1=$(link_bytes)
    for i in $(seq "$k"); do c1[$i]=$(task_cpu_s "${NODE_PID[$i]}"); done
    local cpus; cpus=$(for i in $(seq "$k"); do awk -v a="${c0[$i]}" -v b="${c1[$i]}" 'BEGIN {printf "%.3f\n", b - a}'; done | jq -sc .)
    local warned=0 other
    for i in $(seq "$k"); do
        if grep -q 'link_tls = off' "$WORK/node$i.err" 2>/dev/null; then warned=$((warned + 1)); fi
        other=$({ grep -v 'link_tls = off' "$WORK/node$i.err" 2>/dev/null || true; } | head -c 400 | tr '\n' ' ')
        if [ -n "$other" ]; then log "server log node$i.err: $other"; fi
    done
    local metrics info
    metrics=$(python3 "$BENCH/mesh_redis.py" metrics "${urls[@]}")
    info=$(jq -sc --argjson form "$form_ms" --argjson link "$CLUSTER_LINK_MS" --argjson b0 "$b0" \
        --argjson b1 "$b1" --argjson cpus "$cpus" --argjson warned "$warned" --arg extra "$CLUSTER_EXTRA" \
        '.[0] + .[1] + {cluster_formed_ms: $form, linked_after_listening_ms: $link, cluster_extra: $extra,
          link_tls_off_warnings: $warned,
          sat_link_bytes: (if ($b0 | type) == "object" and ($b1 | type) == "object" then $b1.bytes - $b0.bytes else null end),
          sat_link_sockets: [$b0.sockets?, $b1.sockets?], sat_node_cpu_s: $cpus}' \
        "$WORK/t-watch" <(echo "$metrics"))
    record "t$k-info" "$bus" "$info"
    jq -r '"  presence: \(if .presence_converged then "every node counted \(.presence_expected) listeners after \(.presence_full_s) s" else "NOT converged: saw \(.presence_last_seen) of \(.presence_expected)" end); cluster formed in \(.cluster_formed_ms) ms; `link_tls = off` warnings: \(.link_tls_off_warnings); saturation run: \(.sat_link_bytes) bytes on the links (sockets \(.sat_link_sockets)), node CPU s \(.sat_node_cpu_s); peer reconnects \(.peer_reconnects_total), protocol errors \(.peer_protocol_errors_total), slow listeners evicted \(.slow_listeners_evicted_total)"' <<<"$info" >&2
    stop_all
}

scenario_t() {
    if ! grep -aq 'link_tls' "$WC" || ! command -v ss >/dev/null; then
        not_applicable "t$T_NODES-rate" tls "a build without link_tls, or no ss"
        return 0
    fi
    local round
    for round in $(seq "$T_ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then t_config tls; t_config clear
        else t_config clear; t_config tls; fi
    done
}

# ------------------------------------------------------------ w, w-small ----
# (w) issue 17: a million concurrent SSE listeners on one node of
# W_WORKERS worker processes (--workers: SO_REUSEPORT on one port, the
# workers' loopback mesh), (w-small) the same at 100,000. Not in the default
# set: w holds ~5 GB and both cores for minutes. Supervisor and workers on
# core SERVER_CPU, loadgen on LOADGEN_CPU; loadgen splits itself into
# processes of <= hard-limit - 100 listeners, each from its own source
# address (127.0.0.2, .3, ...). While loadgen connects, a sampler polls
# /cluster (every worker's listeners) and, at the first sample with the
# most listeners seen, takes MemAvailable and the RSS summed over every
# worker; then W_MESSAGES messages at W_RATE/s to everyone, latency from the
# due time, loss. Each step bounded: W_CONNECT_S to connect, W_DRAIN_S to
# drain, the whole loadgen run under W_CONNECT_S + 300 s.
w_run() { # w_run SCENARIO LISTENERS WORKERS
    local scen=$1 listeners=$2 workers=$3
    local messages=${W_MESSAGES:-5} rate=${W_RATE:-1} connect_s=${W_CONNECT_S:-600} drain_s=${W_DRAIN_S:-150}
    local ma0 sup wpids=() pids=() p i
    ma0=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
    start_wc "$scen" --workers "$workers"
    sup=$WC_PID
    for _ in $(seq 100); do
        [ "$(pgrep -P "$sup" | wc -l)" -ge "$workers" ] && break
        sleep 0.1
    done
    # The workers link to each other (a full mesh of loopback TLS links):
    # give them a second per 10 workers, at least 3 s, then check CPU.
    sleep $(( workers / 10 > 3 ? workers / 10 : 3 ))
    mapfile -t wpids < <(pgrep -P "$sup")
    [ "${#wpids[@]}" -eq "$workers" ] || log "($scen) warning: ${#wpids[@]} of $workers workers running"
    for p in "${wpids[@]}"; do pids+=(--server-pid "$p"); done
    local cpu0 cpu1 rss0=0
    cpu0=$(for p in "${wpids[@]}"; do task_cpu_s "$p"; done | awk '{s+=$1} END {print s}')
    sleep 2
    cpu1=$(for p in "${wpids[@]}"; do task_cpu_s "$p"; done | awk '{s+=$1} END {print s}')
    for p in "${wpids[@]}"; do rss0=$((rss0 + $(rss_kib "$p"))); done
    local idle_cpu; idle_cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.1f", (b - a) / 2 * 100}')
    log "($scen) $workers workers up, idle: $idle_cpu % of a core, RSS $rss0 KiB in all"
    local ma1; ma1=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
    local samples="$WORK/$scen.samples"; : >"$samples"
    # Connections counted from /proc/net/sockstat (TCP sockets in use, both
    # ends on loopback, less those before): /cluster's count relies on the
    # workers' presence, which a starved worker stops sending.
    local inuse0; inuse0=$(awk '/^TCP:/ {print $3}' /proc/net/sockstat)
    (
        while sleep 1; do
            l=$(( ($(awk '/^TCP:/ {print $3}' /proc/net/sockstat) - inuse0) / 2 ))
            r=0; for p in "${wpids[@]}"; do r=$((r + $(rss_kib "$p" | sed 's/null/0/'))); done
            echo "$(date +%s) $l $(awk '/^MemAvailable/ {print $2}' /proc/meminfo) $r"
        done
    ) >>"$samples" 2>/dev/null &
    local sampler=$!
    PIDS+=("$sampler")
    local t0=$SECONDS
    W_TIMEOUT=$((connect_s + 300)) loadgen "$scen" watercooler --mode watercooler \
        --listen "$WC_HTTP/listen" --publish "$WC_HTTP/publish" \
        --listeners "$listeners" --messages "$messages" --rate "$rate" "${pids[@]}" \
        --idle-s 10 --connect-timeout-s "$connect_s" --drain-timeout-s "$drain_s" \
        --deadline-s $((connect_s + 280))
    kill "$sampler" 2>/dev/null || true
    # The first sample with the most listeners: MemAvailable and worker RSS.
    local best; best=$(awk '$2 != "null" && $2 + 0 > m {m = $2 + 0; line = $0} END {print line}' "$samples")
    local lmax mac rssc
    read -r _ lmax mac rssc <<<"${best:-0 0 0 0}"
    local ma_end; ma_end=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
    server_errors "$WORK/$scen.err"
    local warns; warns=$(grep -c . "$WORK/$scen.err" 2>/dev/null || echo 0)
    stop_all
    sleep 1
    local ma_stopped; ma_stopped=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
    record "$scen-mem" watercooler "$(jq -nc --argjson w "$workers" --argjson n "$listeners" \
        --argjson ma0 "$ma0" --argjson ma1 "$ma1" --argjson mac "${mac:-0}" --argjson lmax "${lmax:-0}" \
        --argjson rss0 "$rss0" --argjson rssc "${rssc:-0}" --argjson ma_stopped "$ma_stopped" \
        --argjson idle_cpu "$idle_cpu" --argjson warns "$warns" --argjson secs $((SECONDS - t0)) \
        '{workers:$w, listeners_requested:$n, listeners_seen:$lmax,
          mem_available_kib_before:$ma1, mem_available_kib_connected:$mac, mem_available_kib_stopped:$ma_stopped,
          mem_available_kib_before_server:$ma0,
          mem_available_drop_per_listener_bytes:(if $lmax > 0 then (($ma1 - $mac) * 1024 / $lmax | floor) else null end),
          workers_rss_kib_idle:$rss0, workers_rss_kib_connected:$rssc,
          workers_rss_per_listener_bytes:(if $lmax > 0 then (($rssc - $rss0) * 1024 / $lmax | floor) else null end),
          workers_idle_cpu_pct:$idle_cpu, server_log_lines:$warns, loadgen_wall_s:$secs}')"
    log "($scen) $workers workers: most listeners seen $lmax; MemAvailable $ma1 -> $mac KiB ($(( lmax > 0 ? (ma1 - mac) * 1024 / lmax : 0 )) B per listener), workers' RSS $rss0 -> $rssc KiB ($(( lmax > 0 ? (rssc - rss0) * 1024 / lmax : 0 )) B per listener); MemAvailable after stopping: $ma_stopped KiB"
}
# Workers: enough that none passes about 85 % of its fd limit.
w_workers() { local per=$(( (NOFILE - 64) * 85 / 100 )); echo $(( ($1 + per - 1) / per )); }
scenario_w() {
    local n=${W_LISTENERS:-$(n 1000000)}
    w_run w "$n" "${W_WORKERS:-$(w_workers "$n")}"
}
scenario_w_small() {
    local n=${W_SMALL_LISTENERS:-$(n 100000)}
    w_run w-small "$n" "${W_SMALL_WORKERS:-8}"
}

T0=$SECONDS
# Other work on this machine skews every figure: say so when the CPUs are not idle.
cpu_idle_pct() {
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    local tot=0 i
    for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
    echo $(( 100 * (b[4] - a[4]) / (tot > 0 ? tot : 1) ))
}
idle=$(cpu_idle_pct)
if [ "$idle" -lt 85 ]; then
    log "warning: the CPUs are only $idle % idle before the run; figures will be noisy. Busiest:" \
        "$(top -bn2 -d0.5 | awk '/^ *PID/ {n++} n == 2 && $9+0 > 10 {printf "%s(%s%%) ", $12, $9}')"
fi
log "run $RUN_ID: scenarios ${SCENARIOS[*]}$([ $SCALE -gt 1 ] && echo ' (quick: counts / 10)'); results in $RESULTS"
node_idle
for s in "${SCENARIOS[@]}"; do "scenario_${s//-/_}"; done
log "done in $((SECONDS - T0)) s; CPUs $(cpu_idle_pct) % idle after (before: $idle %)"

python3 "$BENCH/table.py" "$RESULTS" "$RUN_ID"
python3 "$BENCH/durable.py" table "$RESULTS" "$RUN_ID"
python3 "$BENCH/mesh_redis.py" table "$RESULTS" "$RUN_ID"
python3 "$BENCH/link_tls.py" "$RESULTS" "$RUN_ID"
