#!/bin/sh
# The thread models over HTTP (bench/http_models.c on loopback, wrk as the client): for each
# model (a worker pool of THREADS, a thread per connection) and strategy (luapool's default
# sandbox, a pinned stock state per thread), the requests per second of a tiny handler alone,
# then beside one client that sends only requests looping until their 200 ms time budget stops
# them.  Measures, never asserts.  Needs wrk (apt-get install wrk) and libmicrohttpd-dev at
# configure time.  SECONDS_EACH (default 5), THREADS (default 2), CONNECTIONS (default 16).
set -eu
bin=${top_builddir:-.}/bench/http_models
secs=${SECONDS_EACH:-5}
threads=${THREADS:-2}
conns=${CONNECTIONS:-16}
command -v wrk >/dev/null || { echo "http_models.sh: wrk is not installed (apt-get install wrk)" >&2; exit 0; }
[ -x "$bin" ] || { echo "http_models.sh: $bin not built (libmicrohttpd-dev missing at configure?)" >&2; exit 0; }
port=$((20000 + $$ % 20000))
rps() { sed -n 's/^Requests\/sec: *//p' "$1"; }
pct() { sed -n "s/^ *$2% *//p" "$1"; }
tmp=${TMPDIR:-/tmp}/http_models.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
printf '%-6s %-8s %12s %9s %9s %14s %8s\n' model strategy "req/s" p50 p99 "hostile:req/s" kept
for model in pool tpc; do
  for strategy in luapool pinned; do
    port=$((port + 1))
    "$bin" --port "$port" --model "$model" --threads "$threads" --strategy "$strategy" \
      2>"$tmp/server.log" &
    pid=$!
    sleep 0.5
    wrk -t2 -c"$conns" -d1s "http://127.0.0.1:$port/hello" >/dev/null 2>&1 || true # warm-up
    wrk -t2 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/hello" >"$tmp/alone" 2>&1
    wrk -t1 -c1 -d"${secs}s" "http://127.0.0.1:$port/spin" >"$tmp/spin" 2>&1 &
    spin=$!
    wrk -t2 -c"$conns" -d"${secs}s" "http://127.0.0.1:$port/hello" >"$tmp/mixed" 2>&1
    wait "$spin" || true
    kill "$pid" 2>/dev/null
    wait "$pid" || true
    a=$(rps "$tmp/alone")
    m=$(rps "$tmp/mixed")
    kept=$(awk -v a="$a" -v m="$m" 'BEGIN { if (a > 0) printf "%.3f", m / a; else print "-" }')
    printf '%-6s %-8s %12s %9s %9s %14s %8s\n' "$model" "$strategy" "$a" \
      "$(pct "$tmp/alone" 50)" "$(pct "$tmp/alone" 99)" "$m" "$kept"
  done
done
