#!/usr/bin/env bash
# Benchmarks ferry against its peers on loopback and writes BENCHMARKS.md
# and BENCHMARKS.png (the chart) at the top of the repo.
#
#   scripts/bench.sh            # full run, about 28 minutes (mitm included)
#   QUICK=1 scripts/bench.sh    # smoke run, about 5 minutes: smaller sizes, one round, 3000 idle tunnels
#   MODES=http OUT=/tmp/http.md PNG=/tmp/http.png scripts/bench.sh
#                               # plain HTTP only, about 4 minutes (a partial report)
#   scripts/bench.sh mitm       # intercepted HTTPS only, about 4 minutes: replaces
#                               # the "Intercepted HTTPS" section of BENCHMARKS.md
#
# Each proxy runs alone, freshly started for each setup, pinned to core
# PROXY_CPU (0) with taskset; the load tool (scripts/bench) runs on
# TOOL_CPU (1) with its own target server. Every peer runs as its users
# would tune it for speed, without per-connection logging; the report
# prints each one's command line and configuration file. Setups:
#   ferry CONNECT, SOCKS5 and tcp (fixed forward), access log on (log
#     plugin, to a file): every mode, connrate on a process of its own
#     (rate-connect, rate-socks5, rate-tcp) run right before the same
#     setup without the log;
#   ferry+nolog: the same without the access log: idle, connrate,
#     throughput and (absolute-form GETs) http, the modes the log can
#     change; the targets judge it, as the peers run without logging;
#   ferry HTTP/2 CONNECT: the tunnels of a run as CONNECT streams of one
#     HTTP/2 connection, with prior knowledge (h2c) on the same listener
#     and, as ferry+tls, ALPN h2 on the TLS listener: idle, ping-pong and
#     throughput;
#   ferry+hook: the same with a no-op data plugin (replace with a rule
#     that never matches, flush_after 0s), which takes the splice fast
#     path away: throughput and ping-pong;
#   ferry+tls: CONNECT and SOCKS5 through a TLS listener (the tool speaks
#     TLS to ferry with a certificate from `bench tls-cert`, resuming
#     sessions; ferry to the target is plain): CONNECT every mode but
#     http, SOCKS5 throughput and ping-pong;
#   haproxy: tcp fixed forward, splice forced both ways, no log;
#   tinyproxy (LogLevel Critical, no LogFile) and squid (no cache, no
#     disk, access_log none): CONNECT, and plain HTTP;
#   dante (no log lines in its rules: errors only, to a file) and
#     microsocks (which logs each connection to stderr, sent to
#     /dev/null): SOCKS5;
#   gost and glider, the Go proxies (built at pinned versions into the
#     run's work directory; skipped with a note when the Go module proxy
#     does not serve them): CONNECT and SOCKS5 listeners, logging at
#     error level (gost, to a file) or off (glider without -verbose),
#     and plain HTTP through the CONNECT listener;
#   gonet, not a peer but the floor of a Go forwarder: `bench forward`,
#     net.Listen, net.Dial and io.Copy each way (spliced) with one
#     goroutine per direction and nothing else (no handshake, limits,
#     timeouts or log): tcp; and `bench forward -http`, one keep-alive
#     exchange after another, heads passed on as they came and bodies
#     by Content-Length: plain HTTP. Its distance to haproxy is what
#     Go's net package and scheduler cost; ferry's distance to it is
#     what ferry's own work costs.
# Modes: idle (first, on a fresh process; once for each of IDLE_N, each
# on a process of its own), connrate, pingpong, throughput; and http,
# plain HTTP through keep-alive connections against an nginx origin
# (nginx-light, on the tool's core, no access log), each setup a fresh
# process of its own:
#   ferry: absolute-form GETs, with its access log (http) and without
#     (nolog-http);
#   squid (also via off, forwarded_for transparent), tinyproxy (also
#     DisableViaHeader), gost and glider: absolute-form;
#   haproxy: mode http as a reverse proxy to the origin, keep-alive both
#     sides, no log: origin-form GETs, the L7 reference;
#   gonet (`bench forward -http`): absolute-form, the Go floor.
# The modes of REPEAT_MODES run REPEATS times, in rounds: each round
# starts every setup afresh in turn, and the report shows the median of
# each figure and the worst run. A ratio pairs the same round of two
# setups, so a round runs the setups a ratio compares one after the
# other: each hooked setup right after the one it is judged against,
# the quota setups right before theirs (ferry+nolog CONNECT), the no-log
# setups last, each right after the same setup with the access log for
# the figures the report shows beside them (new tunnels, plain HTTP),
# and then haproxy and gonet. Measured minutes apart, as
# they once were, the pairs took the machine's drift along (a 1.3x
# quota ratio the same binaries showed as 0.97-1.04x back to back).
# and mitm, intercepted HTTPS (issue 18): GETs through CONNECT tunnels
# whose TLS the proxy terminates, from Go's HTTP client (HTTP/1.1, a
# keep-alive tunnel per connection; HTTP/2, one tunnel multiplexing all),
# to nginx over TLS (HTTP/2) on the tool's core, objects of HTTP_OBJECTS,
# each setup a fresh process, reported in a section of its own; in REPEATS
# rounds when mitm is among REPEAT_MODES, each round running ferry and
# mitmdump over one protocol one after the other:
#   ferry: the mitm plugin alone, no access log; and the same ferry
#     proxying plain http:// requests for the same objects (the cost of a
#     request without TLS);
#   mitmdump (mitmproxy, Debian package mitmproxy, installed when
#     missing): -q, flow_detail=0, every body
#     streamed, ferry's CA as its own (both proxies sign ECDSA P-256
#     leaves), the origin's certificate verified.
#
# Environment (defaults full / QUICK=1):
#   BYTES        bytes per throughput run, split among the streams  (1GiB / 512MiB)
#   STREAMS      stream counts                                      (1,8)
#   DURATION     connection-rate run                                (2s / 1s)
#   CONCURRENCY  connection-rate clients                            (32)
#   ROUNDS       ping-pong round trips                              (30000 / 5000)
#   IDLE_N       idle tunnels, one run each                         (3000 9000 / 3000)
#   HOLD         idle hold before measuring                         (2s / 1s)
#   TIMEOUT      time cap of each measured run                      (60s / 20s)
#   REPEATS      rounds of the repeated modes                       (3 / 1)
#   REPEAT_MODES modes run in every round, the others in the first  (throughput connrate http pingpong mitm)
#   HTTP_CONNS     plain HTTP keep-alive connections                (16)
#   HTTP_DURATION  plain HTTP run per proxy and object size          (3s / 2s)
#   HTTP_REQUESTS  plain HTTP requests per run at most               (2000000)
#   HTTP_OBJECTS   plain HTTP and mitm object sizes                  (1KiB,64KiB)
#   MITM_CONNS     mitm: HTTP/1.1 connections, HTTP/2 workers        (16)
#   MITM_DURATION  mitm: run per proxy, protocol and object size     (5s / 2s)
#   PEERS        peers to run: haproxy gonet tinyproxy squid dante microsocks gost glider
#   FERRY        ferry setups to run: h2 connect hook-connect socks5 hook-socks5 tcp hook-tcp quota-connect quota-redis-connect rate-connect nolog-connect rate-socks5 nolog-socks5 rate-tcp nolog-tcp http nolog-http
#   MODES        modes to run: idle connrate pingpong throughput http udp mitm
#   FERRY_TLS    ferry setups through its TLS listener, run before FERRY: tls-connect tls-socks5 tls-h2
#   UDP_WINDOW   udp: datagrams in flight through the association    (32)
#   GOST_VERSION, GLIDER_VERSION  versions built (v3.2.6, v0.16.4); gost's
#                go.mod names github.com/go-gost/gost without /v3, so if
#                the go command refuses the tag v3.2.6, give the tag's
#                commit (a pseudo-version) instead
#   OUT, PNG     output files (BENCHMARKS.md, BENCHMARKS.png)
#   PORT_BASE    first of 26 loopback ports used (24100)
#   PROXY_CPU, TOOL_CPU  cores (0, 1)
#   KEEP=1       keep the work directory (configs, logs, results.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$SECONDS
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# cpu_waited_us is the kernel's count of microseconds some task waited
# for a CPU (pressure stall information), empty where the kernel has
# none: what it grows by over the run says how crowded the cores were.
cpu_waited_us() {
	awk '/^some/ { for (i = 2; i <= NF; i++) if (sub("^total=", "", $i)) print $i }' /proc/pressure/cpu 2>/dev/null || true
}
waited_before=$(cpu_waited_us)

# damon_schemes describes the kernel's DAMON reclaim running on this
# machine, if any: it pages out memory it finds idle, on its own
# schedule, one more thing a run's figures can move with.
damon_schemes() {
	local d c s out=
	for d in /sys/kernel/mm/damon/admin/kdamonds/[0-9]*; do
		[ "$(cat "$d/state" 2>/dev/null)" = on ] || continue
		for c in "$d"/contexts/[0-9]*; do
			for s in "$c"/schemes/[0-9]*; do
				out+="${out:+; }kdamond ${d##*/}: $(cat "$s/action") of $(cat "$c/operations") memory idle for $(($(cat "$s/access_pattern/age/min") * $(cat "$c/monitoring_attrs/intervals/aggr_us") / 1000000)) s, at most $(($(cat "$s/quotas/bytes") >> 20)) MiB per $(cat "$s/quotas/reset_interval_ms") ms"
			done
		done
	done
	echo "$out"
}

quick=${QUICK:-0}
if [ "$quick" = 1 ]; then
	d_bytes=512MiB d_duration=1s d_rounds=5000 d_idle=3000 d_hold=1s d_timeout=20s d_http=2s d_repeats=1
else
	d_bytes=1GiB d_duration=2s d_rounds=30000 d_idle="3000 9000" d_hold=2s d_timeout=60s d_http=3s d_repeats=3
fi
BYTES=${BYTES:-$d_bytes}
STREAMS=${STREAMS:-1,8}
DURATION=${DURATION:-$d_duration}
CONCURRENCY=${CONCURRENCY:-32}
ROUNDS=${ROUNDS:-$d_rounds}
IDLE_N=${IDLE_N:-$d_idle}
IDLE_N=${IDLE_N//,/ }
REPEATS=${REPEATS:-$d_repeats}
REPEAT_MODES=${REPEAT_MODES:-throughput connrate http pingpong mitm}
HOLD=${HOLD:-$d_hold}
TIMEOUT=${TIMEOUT:-$d_timeout}
HTTP_CONNS=${HTTP_CONNS:-16}
HTTP_DURATION=${HTTP_DURATION:-$d_http}
HTTP_REQUESTS=${HTTP_REQUESTS:-2000000}
HTTP_OBJECTS=${HTTP_OBJECTS:-1KiB,64KiB}
PEERS=${PEERS:-haproxy gonet tinyproxy squid dante microsocks gost glider}
FERRY=${FERRY:-h2 connect hook-connect socks5 hook-socks5 tcp hook-tcp quota-connect quota-redis-connect rate-connect nolog-connect rate-socks5 nolog-socks5 rate-tcp nolog-tcp http nolog-http}
MODES=${MODES:-idle connrate pingpong throughput http udp mitm}
FERRY_TLS=${FERRY_TLS-tls-connect tls-socks5 tls-h2} # empty: none
UDP_WINDOW=${UDP_WINDOW:-32}
GOST_VERSION=${GOST_VERSION:-v3.2.6}
GLIDER_VERSION=${GLIDER_VERSION:-v0.16.4}
OUT=${OUT:-$root/BENCHMARKS.md}
PNG=${PNG:-$root/BENCHMARKS.png}
PORT_BASE=${PORT_BASE:-24100}
PROXY_CPU=${PROXY_CPU:-0}
TOOL_CPU=${TOOL_CPU:-1}
MITM_CONNS=${MITM_CONNS:-16}
d_mitm=5s
[ "$quick" = 1 ] && d_mitm=2s
MITM_DURATION=${MITM_DURATION:-$d_mitm}

log() { echo "== $*" >&2; }
die() { echo "bench.sh: $*" >&2; exit 1; }
# scripts/bench.sh mitm: the mitm mode alone, into its section of OUT.
mitm_only=0
if [ "${1:-}" = mitm ]; then
	mitm_only=1 MODES=mitm PEERS="" FERRY="" FERRY_TLS=""
elif [ $# -gt 0 ]; then
	die "unknown argument $1 (the only one is mitm)"
fi
# selected MODE...: whether MODES has any of the modes.
selected() {
	local m
	for m in "$@"; do
		case " $MODES " in *" $m "*) return 0 ;; esac
	done
	return 1
}

[ "$(uname -s)" = Linux ] || die "needs Linux (/proc, taskset)"
[ "$(nproc)" -ge 2 ] || [ "$PROXY_CPU" != "$TOOL_CPU" ] || die "needs 2 cores to pin the proxy and the tool apart (set PROXY_CPU/TOOL_CPU)"
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"

[[ "$REPEATS" =~ ^[1-9][0-9]?$ ]] || die "REPEATS: $REPEATS, want 1 to 99"
for n in $IDLE_N; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "IDLE_N: $n, want counts"; done
idle_max=$(printf '%s\n' $IDLE_N | sort -n | tail -1)

# The peers: Debian's, installed when missing; the Go ones are built
# later, into the work directory.
declare -A pkg=([haproxy]=haproxy [tinyproxy]=tinyproxy [squid]=squid [dante]=dante-server [microsocks]=microsocks [gost]=go [glider]=go [gonet]=bench)
missing=()
needed=()
for p in $PEERS; do
	[ -n "${pkg[$p]:-}" ] || die "unknown peer $p"
	[[ "${pkg[$p]}" =~ ^(go|bench)$ ]] || needed+=("${pkg[$p]}")
done
# The plain HTTP origin.
if selected http mitm; then needed+=(nginx-light); fi
# The peer of the mitm mode.
if selected mitm; then needed+=(mitmproxy); fi
# The Redis of the quota-redis setups.
case " $FERRY " in *" quota-redis-"*) needed+=(redis-server) ;; esac
for p in "${needed[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing: ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these as services on install; ours run on their own ports,
# but a running service would take CPU during the measurements.
for s in haproxy tinyproxy squid danted nginx; do
	if command -v systemctl >/dev/null && systemctl is-active --quiet "$s" 2>/dev/null; then
		log "note: the $s service is running; it may disturb the measurements"
	fi
done

# 9000 idle tunnels are 18000 sockets in the proxy and in the tool.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then ulimit -n 1048576 2>/dev/null || true; else ulimit -n "$hard"; fi
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((2 * idle_max + 200)) ] ||
	log "warning: open-file limit $(ulimit -n) is below 2×IDLE_N+200: the idle runs will fall short"

work=$(mktemp -d /tmp/ferry-bench.XXXXXX)
chmod 755 "$work"
mkdir -m 777 "$work/peer" # squid and dante drop privileges and write here
results=$work/results.jsonl
: >"$results"
notes=()

# The proxy under test runs in a cgroup of its own when one can be made
# (root, and a cgroup v1 cpuacct or a v2 hierarchy): the tool reads its
# CPU time there, in nanoseconds. /proc counts it in clock ticks of 10 ms,
# and two ticks are 8% of a 1 GiB single-stream run here.
cgroup=""
for base in /sys/fs/cgroup/cpuacct /sys/fs/cgroup/unified /sys/fs/cgroup; do
	[ -f "$base/cpuacct.usage" ] || [ -f "$base/cgroup.controllers" ] || continue
	if mkdir "$base/ferry-bench.$$" 2>/dev/null; then
		cgroup=$base/ferry-bench.$$
		break
	fi
done
[ -n "$cgroup" ] || notes+=("no cgroup could be made (root and a cpuacct or cgroup v2 hierarchy are needed): CPU read from /proc in clock ticks of 10 ms")

# squid_conf FILE ADDR writes a squid configuration tuned for speed: no
# cache, no disk, no access log, requests from localhost only; plain
# HTTP without Via or X-Forwarded-For.
squid_conf() {
	local dir
	dir=$(dirname "$1")
	cat >"$1" <<EOF
# No cache, no disk, no access log.
http_port $2
pid_filename $dir/squid.pid
access_log none
cache_log $dir/squid-cache.log
cache_store_log none
coredump_dir $dir
netdb_filename none
cache deny all
cache_mem 8 MB
shutdown_lifetime 0 seconds
pinger_enable off
visible_hostname ferry-bench-squid
cache_effective_user proxy
max_filedescriptors $(ulimit -n)
http_access allow localhost
http_access deny all
via off
forwarded_for transparent
EOF
}

# stop_group ends the process group that $1 leads: TERM, up to $2 tenths
# of a second to go, then KILL.
stop_group() {
	local p=$1 tries=$2
	kill -TERM -- "-$p" 2>/dev/null || true
	for _ in $(seq "$tries"); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}
pid=""
stop_proxy() {
	[ -n "$pid" ] || return 0
	stop_group "$pid" 100
	pid=""
}
# The plain HTTP origin (nginx) runs beside the tool while the http
# mode runs.
origin_pid=""
stop_origin() {
	[ -n "$origin_pid" ] || return 0
	stop_group "$origin_pid" 50
	origin_pid=""
}
redis_pid=""
stop_redis() {
	[ -n "$redis_pid" ] || return 0
	stop_group "$redis_pid" 50
	redis_pid=""
}
cleanup() {
	stop_proxy
	stop_origin
	stop_redis
	if [ -n "$cgroup" ] && ! rmdir "$cgroup" 2>/dev/null; then log "could not remove the cgroup $cgroup"; fi
	if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { echo $((PORT_BASE + $1)); }
target=127.0.0.1:$(port 0)
origin=127.0.0.1:$(port 12)
for i in $(seq 0 25); do
	if ss -Hltn "sport = :$(port "$i")" 2>/dev/null | grep -q .; then
		die "port $(port "$i") is in use; set PORT_BASE"
	fi
done

log "building ferry and the load tool in $work"
ferry_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
ferry_dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | awk '{print $NF}' | grep -v '^BENCHMARKS' | head -8 | tr '\n' ' ' | sed 's/ $//' || true)
CGO_ENABLED=0 go build -o "$work/ferry" .
(cd scripts && go build -o "$work/bench" ./bench) # scripts is a module of its own
"$work/bench" tls-cert "$work" # proxy.pem and proxy-key.pem for the TLS listener

# Where a proxy's output goes, when not to $work/NAME.out: microsocks
# logs every connection to stderr and has no switch to stop it.
declare -A out_of=([microsocks]=/dev/null)
# The load tool's own flags for a proxy: glider's relay holds a tunnel
# up to 5 s after one side closed (it waits for the other direction),
# so its clients close after the echo instead of waiting for the
# target's close to come through, as they do with every other proxy.
declare -A tool_args=([glider]="-wait-close=false")
# Descriptors a proxy holds per idle tunnel, where more than 2: glider
# and gonet (io.Copy's splice) keep two splice pipes (4 fds) beside the
# sockets. Its idle runs are
# skipped at sizes that would pass the open-file limit, where it would
# spin on failed accepts until the time cap.
declare -A fds_per_idle=([glider]=6 [gonet]=6)
# start_proxy NAME ADDR CMD...: runs CMD on the proxy core in its own
# session (so its children can be stopped with it) and waits until ADDR
# accepts. Sets pid.
start_proxy() {
	local name=$1 addr=$2
	shift 2
	if [ -n "$cgroup" ]; then
		# The shell joins the cgroup and becomes the proxy: its children
		# (dante's, squid's helpers) are born in the cgroup too.
		setsid sh -c 'echo $$ >"$0/cgroup.procs" || exit 125; exec "$@"' "$cgroup" \
			taskset -c "$PROXY_CPU" "$@" >"${out_of[$name]:-$work/$name.out}" 2>&1 &
	else
		setsid taskset -c "$PROXY_CPU" "$@" >"${out_of[$name]:-$work/$name.out}" 2>&1 &
	fi
	pid=$!
	local host=${addr%:*} p=${addr##*:}
	for _ in $(seq 150); do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$name exited at start:"
			tail -20 "$work/$name.out" >&2
			pid=""
			return 1
		fi
		if (exec 3<>"/dev/tcp/$host/$p") 2>/dev/null; then
			sleep 0.3
			return 0
		fi
		sleep 0.1
	done
	log "$name does not accept on $addr after 15s"
	tail -20 "$work/$name.out" >&2
	stop_proxy
	return 1
}

# TIME_WAIT sockets from earlier runs: the tool makes the target close
# first so that few hold ephemeral ports, but wait (bounded) if many pile up.
drain_time_wait() {
	for _ in $(seq 70); do
		[ "$(ss -Htan state time-wait 2>/dev/null | wc -l)" -lt 100000 ] && return
		sleep 1
	done
}

# measure NAME VARIANT PROTO ADDR MODES...: runs the tool for each mode
# against the running proxy (pid).
measure() {
	local name=$1 variant=$2 proto=$3 addr=$4
	shift 4
	local mode args
	for mode in "$@"; do
		selected "$mode" || continue
		case $mode in
		http) args=(-origin "$origin" -concurrency "$HTTP_CONNS" -duration "$HTTP_DURATION" -count "$HTTP_REQUESTS" -objects "$HTTP_OBJECTS") ;;
		throughput) args=(-streams "$STREAMS" -bytes "$BYTES") ;;
		connrate) args=(-duration "$DURATION" -concurrency "$CONCURRENCY") ;;
		pingpong) args=(-rounds "$ROUNDS") ;;
		idle) args=(-n "${idle_n:-${IDLE_N%% *}}" -hold "$HOLD") ;;
		udp) args=(-duration "$DURATION" -concurrency "$UDP_WINDOW") ;;
		mitm) args=(-origin "$origin" -origin-tls "localhost:${mitm_tls##*:}" -origin-ca "$work/mitm/ca/ca.pem"
			-concurrency "$MITM_CONNS" -duration "$MITM_DURATION" -count "$HTTP_REQUESTS" -objects "$HTTP_OBJECTS") ;;
		esac
		if [ "$variant" = tls ]; then args+=(-tls-ca "$work/proxy.pem"); fi
		if ! timeout 600 taskset -c "$TOOL_CPU" "$work/bench" -json -mode "$mode" -proxy "$addr" -proto "$proto" \
			-target "$target" -pid "$pid" ${cgroup:+-cgroup "$cgroup"} -name "$name" -variant "$variant" -repeat "$round" -timeout "$TIMEOUT" -max-time 9m \
			${tool_args[$name]:-} "${args[@]}" >>"${measure_out:-$results}"; then
			log "$name${variant:++$variant} $proto $mode: the tool reported a failure"
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$name exited during $mode"
			notes+=("$name${variant:++$variant} $proto exited during $mode")
			return 1
		fi
	done
}

# ferry: one file, a listener per setup; each setup gets a fresh process.
cat >"$work/ferry.toml" <<EOF
[log]
level = "warn"
format = "json"

[defaults]
idle_timeout = "10m"
drain_timeout = "1s"

# The derived limit budgets 6 descriptors a tunnel (two busy splice
# pipes); the idle runs hold 9000 tunnels at 2 each, as an operator with
# idle-heavy load would allow by setting the limit.
[limits]
max_connections = 0

[[listener]]
name = "proxy"
listen = "127.0.0.1:$(port 1)"
protocols = ["http", "socks5"]
plugins = ["access"]
max_connections = 0
# The h2 setup: its idle run holds IDLE_N streams from one address.
h2c = true
max_client_streams = 0

[[listener]]
name = "forward"
listen = "127.0.0.1:$(port 2)"
protocols = ["tcp"]
target = "$target"
plugins = ["access"]
max_connections = 0

[[listener]]
name = "hook"
listen = "127.0.0.1:$(port 3)"
protocols = ["http", "socks5"]
plugins = ["access", "noop"]
max_connections = 0

[[listener]]
name = "hook-forward"
listen = "127.0.0.1:$(port 4)"
protocols = ["tcp"]
target = "$target"
plugins = ["access", "noop"]
max_connections = 0

# The proxy listener behind TLS.
[[listener]]
name = "tls"
listen = "127.0.0.1:$(port 13)"
protocols = ["http", "socks5"]
tls = { cert = "proxy.pem", key = "proxy-key.pem" }
plugins = ["access"]
max_connections = 0
max_client_streams = 0

# Without the access log: the nolog setups (the others use "proxy" and
# "forward").
[[listener]]
name = "nolog"
listen = "127.0.0.1:$(port 10)"
protocols = ["http", "socks5"]
max_connections = 0

[[listener]]
name = "nolog-forward"
listen = "127.0.0.1:$(port 17)"
protocols = ["tcp"]
target = "$target"
max_connections = 0

[[plugin]]
name = "access"
type = "log"
file = "$work/ferry-access.log"

# A data hook that does nothing: the payload is zero bytes, the rule
# never matches, and flush_after = "0s" returns the data to the relay.
[[plugin]]
name = "noop"
type = "replace"
flush_after = "0s"

[[plugin.rule]]
direction = "both"
find = "ferry bench: never in the payload"
replace = "-"
EOF
"$work/ferry" check -c "$work/ferry.toml" >/dev/null

# The quota setups (issue 20's cost): a listener with only the quota
# plugin, a budget per client address never reached, counting both ways;
# against nolog-connect, the same listener without the plugin. Each has
# a file of its own, since [state] is one per process: the embedded
# store (bbolt in $work/state) and a Redis on loopback, on the tool's
# core, without persistence.
quota_conf() { # FILE PORT STATE_KEYS
	cat >"$1" <<EOF
log = { level = "warn" }
defaults = { drain_timeout = "1s" }
listener = [{ name = "quota", listen = "127.0.0.1:$2", plugins = ["quota"], max_connections = 0 }]

[[plugin]]
name = "quota"
[[plugin.limit]]
name = "daily"
per = "client"
bytes = "1000TiB"
period = "day"

[state]
$3
EOF
	"$work/ferry" check -c "$1" >/dev/null
}
quota_conf "$work/ferry-quota.toml" "$(port 22)" "dir = \"$work/state\""
quota_conf "$work/ferry-quota-redis.toml" "$(port 23)" "url = \"redis://127.0.0.1:$(port 24)/0\""

# record_setup NAME CONF CMD...: keeps how a proxy ran for the report
# (the command, the configuration file CONF if any), once per CONF (or
# command), the work directory shown as $WORK.
declare -A recorded=()
record_setup() {
	local name=$1 conf=$2
	shift 2
	local id=${conf:-$*}
	[ -z "${recorded[$id]:-}" ] || return 0
	recorded[$id]=1
	mkdir -p "$work/setups"
	{
		echo "$name${conf:+ ($(basename "$conf"))}"
		echo "$*${out_of[$name]:+ (output to ${out_of[$name]})}${tool_args[$name]:+; the load tool with ${tool_args[$name]}}"
		[ -z "$conf" ] || cat "$conf"
	} | sed "s|$work|\$WORK|g" >"$work/setups/$(printf '%02d' ${#recorded[@]})"
}

# round_modes MODE...: those of MODES this round runs: every one in the
# first round, those of REPEAT_MODES in the others.
round=1
round_modes() {
	local m out=()
	for m in "$@"; do
		selected "$m" || continue
		if [ "$round" -gt 1 ]; then
			case " $REPEAT_MODES " in *" $m "*) ;; *) continue ;; esac
		fi
		out+=("$m")
	done
	echo "${out[*]}"
}

# run_setup NAME VARIANT PROTO ADDR "MODES" CONF CMD...: this round's
# modes against fresh processes of CMD: the idle mode first on a process
# of its own for each size of IDLE_N (so a size does not inherit the
# heap of the one before), then one process for the other modes. The
# other modes once ran on the last idle process: the round that had
# idle runs measured new tunnels after 9,000 of them had closed (ferry
# giving its heap back and growing it again, dante's and microsocks'
# own aftermath), 1.2-1.5x the CPU per tunnel of the rounds without.
run_setup() {
	local name=$1 variant=$2 proto=$3 addr=$4 conf=$6 modes others=() m i
	read -ra modes <<<"$(round_modes $5)"
	shift 6
	[ ${#modes[@]} -gt 0 ] || return 0
	[ "$name" = ferry ] || record_setup "$name" "$conf" "$@"
	for m in "${modes[@]}"; do [ "$m" = idle ] || others+=("$m"); done
	if [ ${#others[@]} -eq ${#modes[@]} ]; then
		run_pass "$name" "$variant" "$proto" "$addr" "" "${others[*]}" "$@"
		return
	fi
	local sizes=() n
	for n in $IDLE_N; do
		if [ "$(ulimit -n)" != unlimited ] && [ $((n * ${fds_per_idle[$name]:-2} + 200)) -gt "$(ulimit -n)" ]; then
			notes+=("$name $proto: idle not measured at $n tunnels: it holds ${fds_per_idle[$name]:-2} descriptors each, past the open-file limit $(ulimit -n)")
			continue
		fi
		sizes+=("$n")
	done
	if [ ${#sizes[@]} -eq 0 ]; then
		[ ${#others[@]} -eq 0 ] || run_pass "$name" "$variant" "$proto" "$addr" "" "${others[*]}" "$@"
		return
	fi
	for n in "${sizes[@]}"; do
		run_pass "$name" "$variant" "$proto" "$addr" "$n" idle "$@" || return 0
	done
	[ ${#others[@]} -eq 0 ] || run_pass "$name" "$variant" "$proto" "$addr" "" "${others[*]}" "$@" || true
}

# run_pass NAME VARIANT PROTO ADDR IDLE_N "MODES" CMD...: one fresh
# process of CMD measured in MODES.
run_pass() {
	local name=$1 variant=$2 proto=$3 addr=$4 n=$5 modes
	read -ra modes <<<"$6"
	shift 6
	local label="$name${variant:++$variant} $proto"
	log "$label: ${modes[*]}${n:+ ($n idle)}, round $round of $REPEATS"
	drain_time_wait
	[ "$name" != ferry ] || rm -f "$work/ferry-access.log"
	start_proxy "$name" "$addr" "$@" || {
		notes+=("$label did not start")
		return 1
	}
	idle_n=$n measure "$name" "$variant" "$proto" "$addr" "${modes[@]}" || true
	stop_proxy
}

run_ferry() {
	local setup=$1 variant="" proto addr modes="idle connrate pingpong throughput" conf=ferry.toml
	case $setup in
	quota-connect) variant=quota proto=connect addr=127.0.0.1:$(port 22) modes="connrate throughput" conf=ferry-quota.toml ;;
	quota-redis-connect)
		variant=quota-redis proto=connect addr=127.0.0.1:$(port 23) modes="connrate throughput" conf=ferry-quota-redis.toml
		start_redis || return 0
		;;
	connect | socks5) proto=$setup addr=127.0.0.1:$(port 1) modes="idle pingpong throughput" ;;
	# The logged setups' new tunnels, measured next to the no-log ones'
	# (see FERRY's order).
	rate-connect | rate-socks5) proto=${setup#rate-} addr=127.0.0.1:$(port 1) modes=connrate ;;
	rate-tcp) proto=tcp addr=127.0.0.1:$(port 2) modes=connrate ;;
	nolog-connect | nolog-socks5) variant=nolog proto=${setup#nolog-} addr=127.0.0.1:$(port 10) modes="idle connrate throughput" ;;
	nolog-tcp) variant=nolog proto=tcp addr=127.0.0.1:$(port 17) modes="idle connrate throughput" ;;
	h2) proto=h2 addr=127.0.0.1:$(port 1) modes="idle pingpong throughput" ;;
	tls-h2) variant=tls proto=h2 addr=127.0.0.1:$(port 13) modes="idle pingpong throughput" ;;
	http) proto=http addr=127.0.0.1:$(port 1) modes=http ;;
	nolog-http) variant=nolog proto=http addr=127.0.0.1:$(port 10) modes=http ;;
	tcp) proto=tcp addr=127.0.0.1:$(port 2) modes="idle pingpong throughput" ;;
	hook-connect | hook-socks5) variant=hook proto=${setup#hook-} addr=127.0.0.1:$(port 3) modes="pingpong throughput" ;;
	hook-tcp) variant=hook proto=tcp addr=127.0.0.1:$(port 4) modes="pingpong throughput" ;;
	tls-connect) variant=tls proto=connect addr=127.0.0.1:$(port 13) ;;
	tls-socks5) variant=tls proto=socks5 addr=127.0.0.1:$(port 13) modes="pingpong throughput" ;;
	*) die "unknown ferry setup $setup" ;;
	esac
	if [ "$setup" = socks5 ]; then
		modes+=" udp" # SOCKS5 UDP ASSOCIATE through the same listener
	fi
	[ "$conf" = ferry.toml ] || record_setup "ferry+$variant" "$work/$conf" "$work/ferry" run -c "$work/$conf"
	run_setup ferry "$variant" "$proto" "$addr" "$modes" "" "$work/ferry" run -c "$work/$conf"
}

# start_redis starts the quota-redis setups' Redis, once, on the tool's
# core: its CPU is not the proxy's, as a fleet's Redis runs elsewhere.
start_redis() {
	[ -z "$redis_pid" ] || return 0
	if ! command -v redis-server >/dev/null; then
		notes+=("redis-server not installed (apt-get install redis-server): quota-redis not measured")
		return 1
	fi
	setsid taskset -c "$TOOL_CPU" redis-server --bind 127.0.0.1 --port "$(port 24)" --save "" --appendonly no \
		--protected-mode no --loglevel warning >"$work/redis.out" 2>&1 &
	redis_pid=$!
	local i
	for i in $(seq 100); do
		redis-cli -p "$(port 24)" ping 2>/dev/null | grep -q PONG && return 0
		sleep 0.05
	done
	notes+=("redis-server did not answer on port $(port 24): quota-redis not measured")
	return 1
}

# The peers' configurations, each tuned for speed as its users would:
# no per-connection logging, one process or thread where there is a
# choice. One file serves each peer's setups (tcp, CONNECT, SOCKS5,
# plain HTTP), except haproxy's mode http.
peer_confs() {
	local dir=$work/peer
	# maxconn and maxpipes fit 9000 tunnels in 20000 fds (haproxy
	# reserves 2 fds a connection and 2 a pipe). No log: tcplog is off
	# for speed, as for the other peers.
	cat >"$dir/haproxy.cfg" <<EOF
# No log: tcplog would write a line per connection.
global
    maxconn $((idle_max + 400))
    maxpipes 256
    nbthread 1

defaults
    mode tcp
    option splice-request
    option splice-response
    maxconn $((idle_max + 400))
    timeout connect 10s
    timeout client 10m
    timeout server 10m

frontend bench
    bind 127.0.0.1:$(port 5)
    default_backend target

backend target
    server target $target
EOF
	cat >"$dir/haproxy-http.cfg" <<EOF
# The L7 reference: a reverse proxy to the origin, keep-alive both
# sides, no log.
global
    maxconn 4000
    nbthread 1

defaults
    mode http
    option http-keep-alive
    timeout connect 10s
    timeout client 1m
    timeout server 1m
    timeout http-keep-alive 1m

frontend bench
    bind 127.0.0.1:$(port 11)
    default_backend origin

backend origin
    server origin $origin
EOF
	# No LogFile and LogLevel Critical: tinyproxy logs nothing (with a
	# log file at level Connect it looked 7 times slower).
	cat >"$dir/tinyproxy.conf" <<EOF
# No LogFile and LogLevel Critical: nothing logged per connection.
Port $(port 6)
Listen 127.0.0.1
Allow 127.0.0.1
Timeout 600
MaxClients $((idle_max + 1000))
LogLevel Critical
DisableViaHeader Yes
EOF
	squid_conf "$dir/squid.conf" "127.0.0.1:$(port 7)"
	# No log keyword in the rules: dante logs nothing per connection,
	# errors only, to the file.
	local users=""
	[ "$(id -u)" -ne 0 ] || users=$'user.privileged: root\nuser.unprivileged: nobody'
	cat >"$dir/danted.conf" <<EOF
# No log keyword in the rules: nothing logged per connection.
logoutput: $dir/danted.log
internal: 127.0.0.1 port = $(port 8)
external: 127.0.0.1
clientmethod: none
socksmethod: none
$users
client pass {
	from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
	from: 127.0.0.0/8 to: 0.0.0.0/0
	command: connect udpassociate
}
socks pass {
	from: 0.0.0.0/0 to: 127.0.0.0/8
	command: udpreply
}
EOF
	# gost logs every connection at its default level (info): errors
	# only, to a file.
	cat >"$dir/gost.yaml" <<EOF
# At its default level (info) gost logs every connection: errors only.
services:
- name: connect
  addr: 127.0.0.1:$(port 18)
  handler:
    type: http
  listener:
    type: tcp
- name: socks5
  addr: 127.0.0.1:$(port 19)
  handler:
    type: socks5
  listener:
    type: tcp
log:
  level: error
  output: $dir/gost.log
EOF
}

run_peer() {
	local peer=$1 dir=$work/peer m="idle connrate pingpong throughput"
	local glider=("$work/gobin/glider" -listen "http://127.0.0.1:$(port 20)" -listen "socks5://127.0.0.1:$(port 21)")
	case $peer in
	haproxy) run_setup haproxy "" tcp "127.0.0.1:$(port 5)" "$m" "$dir/haproxy.cfg" haproxy -db -f "$dir/haproxy.cfg" ;;
	tinyproxy) run_setup tinyproxy "" connect "127.0.0.1:$(port 6)" "$m" "$dir/tinyproxy.conf" tinyproxy -d -c "$dir/tinyproxy.conf" ;;
	squid) run_setup squid "" connect "127.0.0.1:$(port 7)" "$m" "$dir/squid.conf" squid -N -f "$dir/squid.conf" ;;
	dante) # dante relays UDP ASSOCIATE; microsocks does not
		run_setup dante "" socks5 "127.0.0.1:$(port 8)" "$m udp" "$dir/danted.conf" danted -f "$dir/danted.conf" -p "$dir/danted.pid" ;;
	microsocks) run_setup microsocks "" socks5 "127.0.0.1:$(port 9)" "$m" "" microsocks -i 127.0.0.1 -p "$(port 9)" ;;
	gonet) run_setup gonet "" tcp "127.0.0.1:$(port 25)" "$m" "" "$work/bench" forward -listen "127.0.0.1:$(port 25)" -target "$target" ;;
	gost)
		run_setup gost "" connect "127.0.0.1:$(port 18)" "$m" "$dir/gost.yaml" "$work/gobin/gost" -C "$dir/gost.yaml"
		run_setup gost "" socks5 "127.0.0.1:$(port 19)" "$m" "$dir/gost.yaml" "$work/gobin/gost" -C "$dir/gost.yaml"
		;;
	glider)
		run_setup glider "" connect "127.0.0.1:$(port 20)" "$m" "" "${glider[@]}"
		run_setup glider "" socks5 "127.0.0.1:$(port 21)" "$m" "" "${glider[@]}"
		;;
	esac
	[ "$http_ok" = 1 ] || return 0
	# Plain HTTP, through the peers that forward it.
	case $peer in
	haproxy) run_setup haproxy "" reverse "127.0.0.1:$(port 11)" http "$dir/haproxy-http.cfg" haproxy -db -f "$dir/haproxy-http.cfg" ;;
	tinyproxy) run_setup tinyproxy "" http "127.0.0.1:$(port 6)" http "$dir/tinyproxy.conf" tinyproxy -d -c "$dir/tinyproxy.conf" ;;
	squid) run_setup squid "" http "127.0.0.1:$(port 7)" http "$dir/squid.conf" squid -N -f "$dir/squid.conf" ;;
	gost) run_setup gost "" http "127.0.0.1:$(port 18)" http "$dir/gost.yaml" "$work/gobin/gost" -C "$dir/gost.yaml" ;;
	glider) run_setup glider "" http "127.0.0.1:$(port 20)" http "" "${glider[@]}" ;;
	gonet) run_setup gonet "" http "127.0.0.1:$(port 25)" http "" "$work/bench" forward -http -listen "127.0.0.1:$(port 25)" -target "$origin" ;;
	esac
}

# go_peer NAME: builds gost or glider at its pinned version into
# $work/gobin, never into the repository or ~/go/bin. go install first;
# it refuses a module with replace directives (glider has some) and
# needs the proxy's version list, so then the module's source is
# fetched (go mod download) and built from a writable copy.
declare -A go_mod=([gost]="github.com/go-gost/gost ./cmd/gost $GOST_VERSION" [glider]="github.com/nadoo/glider . $GLIDER_VERSION")
go_peer() {
	local name=$1 mod pkg ver dir
	read -r mod pkg ver <<<"${go_mod[$name]}"
	mkdir -p "$work/gobin"
	if (cd "$work" && GOBIN="$work/gobin" go install "$mod${pkg#.}@$ver") >"$work/$name-build.log" 2>&1; then
		return 0
	fi
	dir=$(cd "$work" && go mod download -json "$mod@$ver" 2>>"$work/$name-build.log" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$dir" ] && [ -d "$dir" ] || return 1
	rm -rf "$work/src-$name"
	cp -r "$dir" "$work/src-$name"
	chmod -R u+w "$work/src-$name"
	(cd "$work/src-$name" && GOFLAGS="${GOFLAGS:-} -mod=mod" go build -o "$work/gobin/$name" "$pkg") >>"$work/$name-build.log" 2>&1
}

# start_origin: nginx on the tool's core, serving an object of N bytes
# at /N for each size of HTTP_OBJECTS, without logging, in plain HTTP on
# origin and, for the mitm mode, over TLS with HTTP/2 on mitm_tls as
# localhost (the tool's self-signed certificate, which the proxies verify
# it with).
mitm_tls=127.0.0.1:$(port 14)
start_origin() {
	local o=$work/origin size sizes=()
	mkdir -p "$o/www" "$o/tmp"
	for size in ${HTTP_OBJECTS//,/ }; do
		size=$("$work/bench" size "$size") || die "HTTP_OBJECTS: bad size $size"
		head -c "$size" /dev/zero >"$o/www/$size"
		sizes+=("$size")
	done
	chmod -R a+rX "$o"
	cat >"$o/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $o/nginx.pid;
error_log $o/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    open_file_cache max=64;
    client_body_temp_path $o/tmp;
    server {
        listen $origin;
        listen $mitm_tls ssl http2;
        ssl_certificate $work/proxy.pem;
        ssl_certificate_key $work/proxy-key.pem;
        root $o/www;
        # A POST (bench -post) gets the object too, as a GET would.
        error_page 405 =200 \$uri;
    }
}
EOF
	setsid taskset -c "$TOOL_CPU" nginx -p "$o" -c "$o/nginx.conf" -e "$o/error.log" >"$o/nginx.out" 2>&1 &
	origin_pid=$!
	for _ in $(seq 50); do
		if ! kill -0 "$origin_pid" 2>/dev/null; then
			log "nginx exited at start:"
			cat "$o/nginx.out" "$o/error.log" 2>/dev/null | tail -20 >&2
			origin_pid=""
			return 1
		fi
		if (exec 3<>"/dev/tcp/${origin%:*}/${origin##*:}") 2>/dev/null; then
			log "origin: nginx on $origin serving objects of ${sizes[*]} bytes"
			return 0
		fi
		sleep 0.1
	done
	log "nginx does not accept on $origin after 5s"
	stop_origin
	return 1
}

# run_mitm: ferry (HTTP/1.1, HTTP/2, plain HTTP) and mitmdump (HTTP/1.1,
# HTTP/2), each a fresh process, results in mitm.jsonl. Both proxies
# sign their leaves with one CA (ferry ca init), which the tool trusts.
run_mitm() {
	local d=$work/mitm proto addr
	"$work/ferry" ca init --out "$d/ca" >/dev/null
	mkdir -p "$d/mitmproxy"
	cat "$d/ca/ca-key.pem" "$d/ca/ca.pem" >"$d/mitmproxy/mitmproxy-ca.pem"
	cp "$d/ca/ca.pem" "$d/mitmproxy/mitmproxy-ca-cert.pem"
	addr=127.0.0.1:$(port 15)
	cat >"$d/ferry.toml" <<EOF
[log]
level = "warn"
format = "json"

[[listener]]
name = "mitm"
listen = "$addr"
protocols = ["http"]
plugins = ["mitm"]
max_connections = 0

[[plugin]]
name = "mitm"
ca_cert = "$d/ca/ca.pem"
ca_key = "$d/ca/ca-key.pem"
intercept = ["localhost"]
upstream_ca_file = "$work/proxy.pem"
EOF
	"$work/ferry" check -c "$d/ferry.toml" >/dev/null
	local peer=1 round
	if ! command -v mitmdump >/dev/null; then
		log "mitmdump not found: install it (Debian: apt-get install mitmproxy) for the comparison"
		notes+=("mitmdump not installed (apt-get install mitmproxy): ferry measured alone")
		peer=0
	fi
	# A ratio pairs ferry's run with mitmdump's (or the plain one's) of
	# the same round: each protocol's two run one after the other.
	for round in $(seq "$(mitm_rounds)"); do
		for proto in h1 h2 http; do
			log "ferry mitm $proto, round $round"
			drain_time_wait
			start_proxy ferry-mitm "$addr" "$work/ferry" run -c "$d/ferry.toml" || { notes+=("ferry (mitm) did not start"); return; }
			measure_out=$work/mitm.jsonl measure ferry "" "$proto" "$addr" mitm || true
			stop_proxy
			if [ "$peer" = 1 ] && [ "$proto" != http ]; then
				run_mitmdump "$proto" || peer=0
			fi
		done
	done
}

# mitm_rounds is how many rounds the mitm mode runs: REPEATS when it is
# among REPEAT_MODES, else one.
mitm_rounds() {
	case " $REPEAT_MODES " in *" mitm "*) echo "$REPEATS" ;; *) echo 1 ;; esac
}

# run_mitmdump measures mitmdump over proto (h1, h2), a fresh process.
run_mitmdump() {
	local d=$work/mitm addr=127.0.0.1:$(port 16)
	log "mitmdump $1, round $round"
	drain_time_wait
	start_proxy mitmdump "$addr" mitmdump -q --listen-host 127.0.0.1 -p "${addr##*:}" \
		--set confdir="$d/mitmproxy" --set flow_detail=0 --set stream_large_bodies=1 \
		--set ssl_verify_upstream_trusted_ca="$work/proxy.pem" || { notes+=("mitmdump did not start"); return 1; }
	measure_out=$work/mitm.jsonl measure mitmdump "" "$1" "$addr" mitm || true
	stop_proxy
}

# mitm_report writes the "Intercepted HTTPS" section into OUT: in place
# of the one there, else before "## Raw results", else at the end.
mitm_report() {
	[ -s "$work/mitm.jsonl" ] || return 0
	{
		echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
		echo "ferry: built from commit $ferry_rev${ferry_dirty:+ with uncommitted changes to $ferry_dirty}; $(version mitmdump --version | sed 's/  */ /g'); origin $(version nginx -v)"
		echo "Pinning: proxy on core $PROXY_CPU, the tool and nginx on core $TOOL_CPU; $MITM_DURATION per run, $MITM_CONNS connections (HTTP/1.1) or workers on one connection (HTTP/2); $(mitm_rounds) rounds"
		echo "Load average before the run: $load_before"
		for n in "${notes[@]}"; do echo "Problem: $n"; done
		echo "Reproduce: scripts/bench.sh mitm"
	} >"$work/mitm-meta.txt"
	"$work/bench" report-mitm -meta "$work/mitm-meta.txt" "$work/mitm.jsonl" >"$work/mitm.md"
	[ -f "$OUT" ] || : >"$OUT"
	awk -v sec="$work/mitm.md" '
		function emit(  l) { while ((getline l < sec) > 0) print l; done = 1 }
		/^## Intercepted HTTPS/ { emit(); skip = 1; next }
		skip && /^## / { skip = 0 }
		skip { next }
		!done && /^## Raw results/ { emit() }
		{ print }
		END { if (!done) emit() }' "$OUT" >"$OUT.tmp"
	mv "$OUT.tmp" "$OUT"
	log "wrote the Intercepted HTTPS section of $OUT"
}

http_ok=0
if selected http mitm; then
	if start_origin; then
		http_ok=1
	else
		notes+=("the nginx origin did not start: no plain HTTP or intercepted HTTPS figures")
	fi
fi
peers=""
for peer in $PEERS; do
	if [ "${pkg[$peer]}" = go ]; then
		log "building $peer ${go_mod[$peer]##* } into $work/gobin"
		if ! go_peer "$peer"; then
			log "$peer: not built (see below); skipped"
			tail -5 "$work/$peer-build.log" >&2
			why=$(grep -m1 -o 'proxy.golang.org.*: [0-9][0-9][0-9] [A-Za-z ]*' "$work/$peer-build.log" || echo "the build failed; KEEP=1 keeps $peer-build.log")
			notes+=("$peer ${go_mod[$peer]##* } could not be built here ($why); skipped")
			continue
		fi
	fi
	peers+=" $peer"
done
peer_confs
record_setup ferry "$work/ferry.toml" "$work/ferry" run -c "$work/ferry.toml"
for round in $(seq "$REPEATS"); do
	for setup in $FERRY_TLS $FERRY; do
		case $setup in http | nolog-http) [ "$http_ok" = 1 ] || continue ;; esac
		run_ferry "$setup"
	done
	for peer in $peers; do
		run_peer "$peer"
	done
done
round=1
if [ "$http_ok" = 1 ] && selected mitm; then run_mitm; fi
stop_origin

elapsed=$((SECONDS - started))
version() { "$@" 2>&1 | head -1 | tr -d '\r' || true; }
if [ "$mitm_only" = 1 ]; then
	mitm_report
	log "done in ${elapsed}s"
	exit 0
fi
{
	echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
	echo "Memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "OS: $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
	echo "Go: $(go version | cut -d' ' -f3-)"
	echo "ferry: $("$work/ferry" version 2>&1 | head -1), built from commit $ferry_rev${ferry_dirty:+ with uncommitted changes to $ferry_dirty}"
	for p in $PEERS; do
		case $p in
		haproxy) echo "haproxy: $(version haproxy -v)" ;;
		tinyproxy) echo "tinyproxy: $(version tinyproxy -v)" ;;
		squid) echo "squid: $(version squid -v)" ;;
		dante) echo "dante: $(version danted -v)" ;;
		microsocks) echo "microsocks: Debian package $(dpkg-query -W -f='${Version}' microsocks 2>/dev/null)" ;;
		gonet) echo "gonet: \`bench forward\` of scripts/bench, net.Listen, net.Dial and io.Copy each way (plain HTTP: \`-http\`, one exchange at a time, no parsing but the head's end and Content-Length), built with $(go version | cut -d' ' -f3) (the floor of a Go forwarder, not a peer)" ;;
		gost | glider) [[ " $peers " != *" $p "* ]] || echo "$p: ${go_mod[$p]%% *}@${go_mod[$p]##* }, built by this script with $(go version | cut -d' ' -f3)" ;;
		esac
	done
	echo "Pinning: proxy on core $PROXY_CPU, load tool and target on core $TOOL_CPU (taskset); open-file limit $(ulimit -n)"
	if [ "$quick" = 1 ]; then
		echo "Run: QUICK=1 (reduced sizes: a smoke run, not the reference figures)"
	else
		echo "Run: full"
	fi
	echo "Sizes: throughput $BYTES per run over streams $STREAMS; connection rate $DURATION with $CONCURRENCY clients; ping-pong $ROUNDS round trips; idle $IDLE_N tunnels (each size on a fresh process) held $HOLD; time cap $TIMEOUT per run; plain HTTP $HTTP_DURATION (at most $HTTP_REQUESTS requests) per object size ($HTTP_OBJECTS) over $HTTP_CONNS keep-alive connections"
	echo "Modes: $MODES"
	echo "Repeats: $REPEATS rounds of $REPEAT_MODES (every setup started afresh in each round; the figures are the medians, the worst run beside), the other modes once"
	echo "TLS (ferry+tls): Go crypto/tls on both ends, TLS 1.3 with an ECDSA P-256 certificate, the load tool resuming sessions; only the client's leg is TLS"
	if [ "$http_ok" = 1 ]; then
		echo "Plain HTTP origin: $(version nginx -v) (nginx-light, one process on core $TOOL_CPU, access_log off, sendfile, keepalive_requests 100000000); the peers as in \"How each proxy ran\"; haproxy in mode http as a reverse proxy (option http-keep-alive, nbthread 1, no log); ferry with its access log (HTTP) and without (+nolog)"
	fi
	echo "Run time: ${elapsed}s for the whole script (build included)"
	echo "Load average before the run: $load_before (1, 5, 15 min; other work on the machine would disturb the figures)"
	waited_after=$(cpu_waited_us)
	if [ -n "$waited_before" ] && [ -n "$waited_after" ] && [ "$elapsed" -gt 0 ]; then
		echo "CPU pressure: some task waited for a CPU $(awk -v d=$((waited_after - waited_before)) -v t="$elapsed" 'BEGIN { printf "%.1f", d / (t * 1e4) }')% of the run (/proc/pressure/cpu; the load tool and its servers share core $TOOL_CPU, so some is the run's own)"
	fi
	damon=$(damon_schemes)
	[ -z "$damon" ] || echo "Kernel memory reclaim: DAMON, $damon"
	for n in "${notes[@]}"; do echo "Problem: $n"; done
	echo "Reproduce: scripts/bench.sh$([ "$quick" = 1 ] && echo ' with QUICK=1')"
} >"$work/meta.txt"

link=$(realpath --relative-to="$(dirname "$OUT")" "$PNG" 2>/dev/null || basename "$PNG")
"$work/bench" report -meta "$work/meta.txt" -png "$PNG" -png-link "$link" -idle-targets 3000,9000 -setups "$work/setups" "$results" >"$OUT.tmp"
# The hand-written analysis of the targets not met follows the figures.
[ -f "$root/scripts/bench/analysis.md" ] && cat "$root/scripts/bench/analysis.md" >>"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
mitm_report
log "wrote $OUT and $PNG in ${elapsed}s"
