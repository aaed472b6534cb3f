#!/usr/bin/env bash
# Soak test: runs ferry on loopback under steady mixed load for DURATION
# and checks that it does not leak: RSS, heap, goroutines and open fds
# stay flat, and goroutines and fds come back to their baseline when the
# load stops.
#
#   scripts/soak.sh [DURATION] [DRIVER FLAGS...]   # DURATION: 10m by default
#   scripts/soak.sh 2m                             # a short run
#   scripts/soak.sh 30m -short-rate 300            # more short tunnels (see: cd scripts && go run ./soak -h)
#
# ferry runs with the access log on (to a file) and these listeners:
#   proxy    http + socks5, no data plugin (the splice fast path);
#   hook     http + socks5 with a no-op data plugin (the copying path);
#   forward  tcp, to the driver's stream target;
#   dead     tcp, to a closed port;
#   admin    metrics, /channels.
# The driver (scripts/soak) runs the targets, the load (short tunnels,
# http:// requests, long transfers, idle tunnels, failures) and the
# sampling, prints a line every 5 s and a summary, and decides the exit
# status: 0 pass; 1 unexpected outcomes, ferry not back to its baseline
# after the load, or ferry not stopping cleanly on SIGTERM afterwards.
#
# Environment:
#   PORT_BASE  first of 10 loopback ports used (24300)
#   KEEP=1     keep the work directory (config, ferry's log, access log)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10m}
[ $# -gt 0 ] && shift
PORT_BASE=${PORT_BASE:-24300}
IDLE_TIMEOUT=15s
HANDSHAKE_TIMEOUT=5s

log() { echo "== $*" >&2; }
die() { echo "soak.sh: $*" >&2; exit 2; }

[ "$(uname -s)" = Linux ] || die "needs Linux (/proc)"
case $DURATION in
*[0-9][smh] | *[0-9]ms) ;;
*) die "DURATION: want a Go duration such as 2m or 90s, got '$DURATION'" ;;
esac
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"

port() { echo $((PORT_BASE + $1)); }
for i in $(seq 0 9); do
	if ss -Hltn "sport = :$(port "$i")" 2>/dev/null | grep -q .; then
		die "port $(port "$i") is in use; set PORT_BASE"
	fi
done

work=$(mktemp -d /tmp/ferry-soak.XXXXXX)
pid=""
stop_ferry() {
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=""
}
cleanup() {
	stop_ferry
	if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building ferry and the soak driver in $work"
CGO_ENABLED=0 go build -o "$work/ferry" .
(cd scripts && go build -o "$work/soak" ./soak) # scripts is a module of its own

cat >"$work/ferry.toml" <<EOF
[log]
level = "warn"
format = "json"

[defaults]
handshake_timeout = "$HANDSHAKE_TIMEOUT"
dial_timeout = "5s"
idle_timeout = "$IDLE_TIMEOUT"
drain_timeout = "5s"

[[listener]]
name = "proxy"
listen = "127.0.0.1:$(port 1)"
protocols = ["http", "socks5"]
plugins = ["access"]

[[listener]]
name = "hook"
listen = "127.0.0.1:$(port 2)"
protocols = ["http", "socks5"]
plugins = ["access", "noop"]

[[listener]]
name = "forward"
listen = "127.0.0.1:$(port 3)"
protocols = ["tcp"]
target = "127.0.0.1:$(port 0)"
plugins = ["access"]

[[listener]]
name = "dead"
listen = "127.0.0.1:$(port 4)"
protocols = ["tcp"]
target = "127.0.0.1:$(port 9)"
plugins = ["access"]

[[plugin]]
name = "access"
type = "log"
file = "$work/access.log"

# A data hook that does nothing (the rule never matches): the listener
# copies through user space instead of splicing.
[[plugin]]
name = "noop"
type = "replace"
flush_after = "0s"

[[plugin.rule]]
direction = "both"
find = "ferry soak: never in the payload"
replace = "-"

[admin]
listen = "127.0.0.1:$(port 5)"
EOF
"$work/ferry" check -c "$work/ferry.toml" >/dev/null

"$work/ferry" run -c "$work/ferry.toml" >"$work/ferry.out" 2>&1 &
pid=$!
log "ferry pid $pid; soak for $DURATION"

status=0
"$work/soak" -duration "$DURATION" -pid "$pid" -admin "127.0.0.1:$(port 5)" \
	-proxy "127.0.0.1:$(port 1)" -hook "127.0.0.1:$(port 2)" -forward "127.0.0.1:$(port 3)" \
	-dead "127.0.0.1:$(port 4)" -target "127.0.0.1:$(port 0)" -closed "127.0.0.1:$(port 9)" \
	-idle-timeout "$IDLE_TIMEOUT" -handshake-timeout "$HANDSHAKE_TIMEOUT" "$@" || status=$?

# ferry must still stop cleanly: SIGTERM, drain, exit 0.
if kill -0 "$pid" 2>/dev/null; then
	kill -TERM "$pid"
	code=0 term=$SECONDS
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "ferry: still running 15s after SIGTERM"
		status=1
	else
		wait "$pid" || code=$?
		pid=""
		if [ "$code" -ne 0 ]; then
			echo "ferry: exit status $code after SIGTERM"
			status=1
		else
			echo "ferry: stopped cleanly on SIGTERM, in $((SECONDS - term))s"
		fi
	fi
else
	echo "ferry: exited during the soak"
	pid=""
	status=1
fi

# ferry's own log (warn and above) and the access log.
lines=$(wc -l <"$work/ferry.out")
echo "ferry log: $lines lines at warn or above; access log: $(wc -l <"$work/access.log") lines"
if [ "$lines" -gt 0 ]; then
	grep -o '"level":"[a-z]*"[^}]*"message":"[^"]*"' "$work/ferry.out" | sed 's/"level":"\([a-z]*\)".*"message":"\([^"]*\)"/\1: \2/' |
		sort | uniq -c | sort -rn | head -10 || true
fi
if grep -q -e 'panic' -e 'fatal error' -e 'DATA RACE' "$work/ferry.out"; then
	echo "ferry log: a panic or fatal error:"
	grep -m5 -e 'panic' -e 'fatal error' -e 'DATA RACE' "$work/ferry.out"
	status=1
fi
exit "$status"
