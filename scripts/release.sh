#!/usr/bin/env bash
# Builds ferry's release binaries: static (CGO_ENABLED=0), with -trimpath
# and the version stamped into main.version, for Linux, macOS, FreeBSD and
# Windows on amd64 and arm64, into dist/ with a SHA256SUMS file.
#
#   scripts/release.sh                  # version from git describe
#   VERSION=v1.2.3 scripts/release.sh   # version given
#   cd dist && sha256sum -c SHA256SUMS  # check the downloads
#
# Files are named ferry-VERSION-OS-ARCH (.exe on Windows). dist/ is
# emptied first. Only Linux has the splice and idle-parking fast paths;
# the others copy through user space.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"

version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
targets=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/arm64 windows/amd64 windows/arm64)

rm -rf dist
mkdir -p dist
for t in "${targets[@]}"; do
	os=${t%/*} arch=${t#*/}
	out="ferry-$version-$os-$arch"
	[ "$os" = windows ] && out="$out.exe"
	echo "== $out"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X main.version=$version" -o "dist/$out" .
done
(cd dist && sha256sum ferry-* >SHA256SUMS)
ls -l dist
