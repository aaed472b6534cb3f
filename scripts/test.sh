#!/usr/bin/env bash
# The one test entry point: installs what the tests need on a fresh Debian
# machine (as root, via apt-get), checks formatting and vet, builds and
# vets every other release target (without running it), runs every test
# with the race detector (the end-to-end tests in test/ included), runs
# every benchmark once as a smoke test, then fuzzes each fuzz target for a
# bounded time.
#
#   scripts/test.sh                 # everything
#   FUZZTIME=0 scripts/test.sh      # skip fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive as real peers and clients: curl as the
# client; haproxy in front of ferry and nginx behind it for PROXY protocol;
# tshark to read the capture plugin's pcapng files; dante-server and
# microsocks (SOCKS5), tinyproxy and squid (HTTP CONNECT, squid also over
# TLS and with Basic auth) as the parent proxies ferry's upstreams,
# chains, groups and routes go through; python3-requests as the keep-alive
# client of the plain HTTP forwarding tests, nginx also as their origin;
# chromium (headless) as the browser that reaches ferry over TLS, HTTP/2
# and a PAC file; python3-socks (PySocks) as the SOCKS5 UDP client,
# dnsmasq as the DNS server it queries on loopback; nodejs as the
# JavaScript engine that evaluates ferry's PAC file; libnss3-tools
# (certutil) to make Chromium trust ferry's CA for intercepted HTTPS;
# slapd (OpenLDAP) as the directory of the auth plugin's ldap backend,
# with ldap-utils (ldapadd) to load its users; redis-server as the shared
# [state] store of quotas; systemd for systemd-analyze, which verifies the
# shipped ferry.service (a container image may lack it, and the test
# would skip; systemd need not be running); openssl, which reads the
# CA's fingerprint the way an operator would (ca-certificates pulls it
# in, named here so it is not left to that).
packages=(curl ca-certificates haproxy nginx-light tshark dante-server microsocks tinyproxy squid python3-requests
	chromium python3-socks dnsmasq nodejs libnss3-tools slapd ldap-utils redis-server systemd openssl)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing: ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
go version

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...
# scripts/ (the bench and soak tools) is a module of its own: ./... above
# stops at its go.mod.
(cd scripts && go vet ./...)

# Every release target (scripts/release.sh's) other than this machine's
# is built and vetted, test files included, but not run: a Linux-only
# call outside a _linux.go file fails here. The end-to-end tests in test/
# are Linux-only by their build constraint, so ./... leaves them out of
# the other systems' vet rather than failing on them.
echo "== cross builds (built and vetted, not run)"
host="$(go env GOOS)/$(go env GOARCH)"
for t in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/arm64 windows/amd64 windows/arm64; do
	[ "$t" = "$host" ] && continue
	echo "-- $t"
	GOOS=${t%/*} GOARCH=${t#*/} go build -o /dev/null .
	GOOS=${t%/*} GOARCH=${t#*/} go vet ./...
done

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...
(cd scripts && go test -race -count=1 ./...)

echo "== benchmarks (smoke: each runs once; speed is not checked)"
go test -run '^$' -bench . -benchtime 1x ./...

fuzztime=${FUZZTIME:-15s}
if [ "$fuzztime" != "0" ]; then
	echo "== fuzz ($fuzztime per target)"
	scripts/fuzz.sh "$fuzztime"
fi
echo "== all tests passed"
