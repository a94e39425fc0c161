#!/bin/sh
# Load over HTTP: examples/luahttpd on loopback, wrk as the client.  Measures, never asserts.
# For each strategy (luapool's default sandbox, luapool with LIBS_ALL, a mutex pool of stock
# states with a stack-only reset, a fresh state per request, a state pinned per thread), a tiny
# handler and a ~30 us one: requests per second and p50/p99 latency, side by side in one run.
# Then, per thread model (a worker pool of THREADS and of 4 x THREADS workers, a thread per
# connection, event loops), luapool's sandbox with HOSTILE (default 1) extra connections that
# send only hostile requests (endless loops stopped by a 200 ms budget, memory bombs stopped by
# a 4 MiB mem_limit) beside the normal ones: the normal requests' throughput, and the share it
# keeps of the same configuration's clean run.  Then the same four configurations under a mix in
# which every 20th request is hostile (5%: bench/load/mix.lua), with the budgets doc/servers.md
# recommends for it (an instruction budget a few times what the largest normal handler needs:
# 20,000; 50 ms of wall clock; 4 MiB): the normal requests' throughput against the clean run's.
# Bounded: SECONDS_EACH (default 5) per run, 31 runs and 23 one-second warm-ups (about 3 minutes).
# THREADS (default 2) server threads, CONNECTIONS (default 16).  Needs wrk and a build with
# libmicrohttpd (examples/luahttpd).
set -eu
top=${top_builddir:-.}
src=${top_srcdir:-$(dirname "$0")/..}
bin=$top/examples/luahttpd
secs=${SECONDS_EACH:-5}
threads=${THREADS:-2}
conns=${CONNECTIONS:-16}
hostile=${HOSTILE:-1}
command -v wrk >/dev/null || { echo "load.sh: wrk is not installed (apt-get install wrk)" >&2; exit 0; }
[ -x "$bin" ] || { echo "load.sh: $bin is not built (make check builds it; libmicrohttpd-dev)" >&2; exit 0; }
tmp=${TMPDIR:-/tmp}/luapool-load.$$
mkdir -p "$tmp"
pid=
launch= # a command the server starts under (taskset), or none
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT

# start MODEL STRATEGY [ARGS...]: starts the server on a free port; sets pid and port
start() {
  model=$1 strategy=$2
  shift 2
  $launch "$bin" --script "$src/bench/load/handler.lua" --port 0 --model "$model" \
    --strategy "$strategy" --quiet "$@" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  i=0
  port=
  while [ -z "$port" ] && [ $i -lt 100 ]; do
    port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\)\/.*/\1/p' "$tmp/out")
    [ -n "$port" ] || sleep 0.05
    i=$((i + 1))
  done
  [ -n "$port" ] || { echo "load.sh: luahttpd did not start:" >&2; cat "$tmp/err" >&2; exit 1; }
}
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
# run PATH [WRK-ARGS...]: wrk against the server; the output in $tmp/wrk
run() {
  path=$1
  shift
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "http://127.0.0.1:$port$path" >"$tmp/wrk" 2>&1 || true
}
rps() { sed -n 's/^Requests\/sec: *//p' "$tmp/wrk"; }
# ratio A B: A / B to 3 places, or - when B is not a positive figure
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
# label MODEL N: a thread model's name in the hostile tables
label() { if [ "$1" = tpc ]; then echo "tpc (a thread each)"; else echo "$1, $2 threads"; fi; }
pct() { sed -n "s/^ *$1% *//p" "$tmp/wrk"; }
non2xx() { sed -n 's/^ *Non-2xx or 3xx responses: *//p' "$tmp/wrk"; }

echo "luahttpd under wrk: $threads server threads, $conns connections, ${secs} s per run, loopback"
printf '%-12s %-6s %12s %10s %10s\n' strategy path "req/s" p50 p99
for strategy in luapool luapool-all mutex fresh pinned; do
  for path in /tiny /work; do
    start pool "$strategy" --threads "$threads" --min-idle "$threads"
    wrk -t2 -c"$conns" -d1s "http://127.0.0.1:$port$path" >/dev/null 2>&1 || true # warm-up
    run "$path"
    printf '%-12s %-6s %12s %10s %10s\n' "$strategy" "$path" "$(rps)" "$(pct 50)" "$(pct 99)"
    stop
  done
done

# Server-bound: with server and wrk on the same cores, wrk's own CPU caps the faster strategies
# alike; with taskset, one server thread on CPU 0 and wrk on CPU 1 measure the server.
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  echo
  echo "Server-bound: 1 server thread on CPU 0, wrk (1 thread, 8 connections) on CPU 1, /tiny"
  printf '%-12s %12s %10s %10s\n' strategy "req/s" p50 p99
  for strategy in luapool luapool-all mutex fresh pinned; do
    launch="taskset -c 0"
    start pool "$strategy" --threads 1 --min-idle 1
    launch=
    taskset -c 1 wrk -t1 -c8 -d1s "http://127.0.0.1:$port/tiny" >/dev/null 2>&1 || true
    taskset -c 1 wrk -t1 -c8 -d"${secs}s" --latency "http://127.0.0.1:$port/tiny" >"$tmp/wrk" 2>&1 || true
    printf '%-12s %12s %10s %10s\n' "$strategy" "$(rps)" "$(pct 50)" "$(pct 99)"
    stop
  done
fi

echo
echo "Hostile clients beside normal ones, luapool sandbox (budget 200 ms, mem_limit 4 MiB):"
echo "$conns connections of /tiny, and $hostile more that send only /spin and /bomb in turn"
printf '%-22s %12s %14s %8s %12s\n' "model" "clean req/s" "beside req/s" kept "hostile/s"
for config in "pool $threads" "pool $((threads * 4))" "tpc $threads" "loop $threads"; do
  set -- $config
  model=$1 n=$2
  start "$model" luapool --threads "$n" --min-idle "$n" --budget-ms 200 --mem-limit-kb 4096
  wrk -t2 -c"$conns" -d1s "http://127.0.0.1:$port/tiny" >/dev/null 2>&1 || true # warm-up
  run /tiny
  clean=$(rps)
  wrk -t1 -c"$hostile" -d"${secs}s" -s "$src/bench/load/hostile.lua" \
    "http://127.0.0.1:$port/" >"$tmp/hostile" 2>&1 &
  h=$!
  run /tiny
  beside=$(rps)
  wait "$h" || true
  stop
  hrate=$(sed -n 's/^Requests\/sec: *//p' "$tmp/hostile")
  printf '%-22s %12s %14s %8s %12s\n' "$(label "$model" "$n")" "$clean" "$beside" \
    "$(ratio "$beside" "$clean")" "$hrate"
done

echo
echo "A hostile mix: every 20th request hostile (5%), /spin and /bomb in turn, the rest /tiny;"
echo "luapool sandbox, --budget-instructions 20000 --budget-ms 50 --mem-limit-kb 4096"
echo "(normal req/s: the requests answered 200, per second; not-200/s: those answered otherwise;"
echo " hostile/s: those sent hostile: the two agree when every normal request got its 200)"
printf '%-22s %12s %12s %8s %10s %10s\n' "model" "clean req/s" "normal req/s" kept "not-200/s" \
  "hostile/s"
# mix EVERY: wrk with bench/load/mix.lua; prints "normal-rate other-rate hostile-rate"
mix() {
  wrk -t2 -c"$conns" -d"${secs}s" -s "$src/bench/load/mix.lua" "http://127.0.0.1:$port/" \
    -- "$1" >"$tmp/mix" 2>&1 || true
  awk '/^answered-200/ { ok = $2 } /^answered-other/ { other = $2 } /^sent-hostile/ { h = $2 }
       /^seconds/ { s = $2 }
       END { if (s > 0) printf "%.0f %.0f %.0f", ok / s, other / s, h / s; else print "- - -" }' \
    "$tmp/mix"
}
for config in "pool $threads" "pool $((threads * 4))" "tpc $threads" "loop $threads"; do
  set -- $config
  model=$1 n=$2
  start "$model" luapool --threads "$n" --min-idle "$n" --budget-instructions 20000 \
    --budget-ms 50 --mem-limit-kb 4096
  wrk -t2 -c"$conns" -d1s "http://127.0.0.1:$port/tiny" >/dev/null 2>&1 || true # warm-up
  # shellcheck disable=SC2046 # mix prints figures to split into $1 $2 $3
  set -- $(mix 0)
  clean=$1
  # shellcheck disable=SC2046
  set -- $(mix 20)
  normal=$1 other=$2 sent=$3
  stop
  printf '%-22s %12s %12s %8s %10s %10s\n' "$(label "$model" "$n")" "$clean" "$normal" \
    "$(ratio "$normal" "$clean")" "$other" "$sent"
done
