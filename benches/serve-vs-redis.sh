#!/usr/bin/env bash
# corelane serve against redis-server, driven by the same redis-benchmark
# command lines, interleaved (corelane, redis, corelane, redis, ...) so both
# see the same machine. Prints requests per second and p50/p99 (medians over
# the rounds) and the ratio corelane/redis for each.
#
#   benches/serve-vs-redis.sh [ROUNDS] [-- extra corelane serve flags]
#
# Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools).
# Both servers listen on loopback only and are stopped on exit.
set -euo pipefail

# Say what is missing before building or starting anything (without
# redis-server the run used to wait 10 s for its port, then show its log).
for tool in redis-server redis-benchmark redis-cli; do
  if ! command -v "$tool" >/dev/null; then
    echo "serve-vs-redis.sh: needs $tool (Debian: apt-get install redis-server redis-tools)" >&2
    exit 1
  fi
done

# ROUNDS may be left out before `--` (`serve-vs-redis.sh -- --cores 1`).
rounds=3
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  rounds=$1
  shift
fi
case $rounds in
  '' | *[!0-9]* | 0)
    echo "serve-vs-redis.sh: ROUNDS must be a positive number, not '$rounds'" >&2
    echo "usage: benches/serve-vs-redis.sh [ROUNDS] [-- corelane serve flags]" >&2
    exit 2
    ;;
esac
[ "${1:-}" = "--" ] && shift
serve_flags=("$@")

corelane_port=${CORELANE_PORT:-6380}
redis_port=${REDIS_PORT:-6390}
requests=${REQUESTS:-200000}
cd "$(dirname "$0")/.."

cargo build --release --quiet
# The binary just built, wherever the target directory is.
corelane_bin="${CARGO_TARGET_DIR:-target}/release/corelane"
work=$(mktemp -d)
cleanup() {
  [ -n "${corelane_pid:-}" ] && kill "$corelane_pid" 2>/dev/null && wait "$corelane_pid" 2>/dev/null
  [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$corelane_bin" serve --bind "127.0.0.1:$corelane_port" "${serve_flags[@]}" \
  >"$work/corelane.log" 2>&1 &
corelane_pid=$!
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  >"$work/redis.log" 2>&1 &
redis_pid=$!

wait_for() {
  for _ in $(seq 1 100); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $1 did not answer; its log:" >&2
  cat "$2" >&2
  exit 1
}
wait_for "$corelane_port" "$work/corelane.log"
wait_for "$redis_port" "$work/redis.log"

# One redis-benchmark run; appends "server,test,rps,p50,p99" to results.
run() {
  local server=$1 port=$2 test=$3
  shift 3
  redis-benchmark -p "$port" -n "$requests" -c 50 -P 16 --csv "$@" 2>/dev/null |
    tail -n 1 | tr -d '"' |
    awk -F, -v s="$server" -v t="$test" '{ print s "," t "," $2 "," $5 "," $7 }' \
      >>"$work/results.csv"
}

for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  for target in "corelane $corelane_port" "redis $redis_port"; do
    set -- $target
    run "$1" "$2" ping_mbulk -t ping_mbulk
    run "$1" "$2" publish publish chan hello
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
field() { awk -F, -v s="$1" -v t="$2" -v f="$3" '$1 == s && $2 == t { print $f }' "$work/results.csv" | median; }

echo
echo "redis-benchmark -n $requests -c 50 -P 16, medians of $rounds interleaved rounds"
echo "corelane serve ${serve_flags[*]:-(defaults)} on :$corelane_port, redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on :$redis_port"
echo
printf '| %-10s | %-8s | %12s | %8s | %8s |\n' test server "requests/s" "p50 ms" "p99 ms"
printf '|%s|%s|%s|%s|%s|\n' ------------ ---------- -------------- ---------- ----------
for test in ping_mbulk publish; do
  for server in corelane redis; do
    printf '| %-10s | %-8s | %12s | %8s | %8s |\n' "$test" "$server" \
      "$(field $server $test 3)" "$(field $server $test 4)" "$(field $server $test 5)"
  done
  awk -v a="$(field corelane $test 3)" -v b="$(field redis $test 3)" \
      -v c="$(field corelane $test 4)" -v d="$(field redis $test 4)" \
      -v e="$(field corelane $test 5)" -v f="$(field redis $test 5)" -v t="$test" \
      'BEGIN { printf "| %-10s | %-8s | %11.2fx | %7.2fx | %7.2fx |\n", t, "ratio", a / b, c / d, e / f }'
done
echo
echo "ratio = corelane / redis: above 1 is better for requests/s, below 1 is better for latency"
echo
echo "corelane cross-core delivery latency after the run (INFO latency):"
redis-cli -p "$corelane_port" info latency | grep delivery
