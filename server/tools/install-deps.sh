#!/usr/bin/env bash
# install-deps.sh: install what socklab needs on Debian 12, only what is missing.
#   install-deps.sh build   compilers and libraries to build and run the server
#   install-deps.sh test    plus what the test suite needs (Chromium, node, python, and
#                           podman with what it needs to build and run the image here)
#   install-deps.sh bench   build, plus what the benchmarks compare against (tcpdump)
set -euo pipefail

mode=${1:-build}
build_pkgs=(gcc make pkg-config libc6-dev libmicrohttpd-dev libwebsockets-dev libjansson-dev
	libnats-dev libssl-dev libpcap-dev libmnl-dev liburing-dev iproute2 procps libseccomp-dev bubblewrap
	python3)
test_pkgs=(libcmocka-dev netcat-openbsd python3 python3-websockets chromium curl
	podman runc catatonit debootstrap docker-compose python3-yaml clang libclang-rt-14-dev tshark
	nats-server golang-github-containernetworking-plugin-dnsname)

bench_pkgs=(tcpdump)

want=("${build_pkgs[@]}")
[ "$mode" = test ] && want+=("${test_pkgs[@]}")
[ "$mode" = bench ] && want+=("${bench_pkgs[@]}")
here=$(cd "$(dirname "$0")/../.." && pwd)
# npm installs the dashboard's chart library (web/npm) when it is missing (an
# image build given a filled web/npm/node_modules needs no npm) and drives the
# browser tests; keep an existing install (it may not be Debian's).
if { [ "$mode" = test ] || [ ! -f "$here/web/npm/node_modules/uplot/dist/uPlot.esm.js" ]; } &&
	! command -v npm >/dev/null 2>&1; then
	want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || {
			echo "install-deps: run as root: apt-get install ${missing[*]}" >&2
			exit 1
		}
		sudo=(sudo)
	fi
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -q
	"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -f "$here/web/npm/node_modules/uplot/dist/uPlot.esm.js" ]; then
	echo "install-deps: npm ci in web/npm"
	(cd "$here/web/npm" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ "$mode" = test ]; then
	# The reverse-proxy test runs Debian's nginx from build/, unpacked from its
	# .deb: installing the package would start a system nginx on port 80.
	if [ ! -x "$here/build/nginx/usr/sbin/nginx" ]; then
		echo "install-deps: unpacking Debian's nginx into build/nginx (for the proxy test)"
		dl=$(mktemp -d)
		(cd "$dl" && { apt-get download -q nginx >/dev/null 2>&1 ||
			{ apt-get update -q >/dev/null && apt-get download -q nginx; }; })
		mkdir -p "$here/build/nginx"
		dpkg-deb -x "$dl"/nginx_*.deb "$here/build/nginx"
		rm -rf "$dl"
	fi
	# The browser tests' playwright-core is pinned to a version Debian 12's own
	# nodejs (18.20) runs; reinstall when what is installed is not the pin.
	pin=$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$here/tests/e2e/package.json")
	have=""
	if [ -f "$here/tests/e2e/node_modules/playwright-core/package.json" ]; then
		have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
			"$here/tests/e2e/node_modules/playwright-core/package.json" | head -1)
	fi
	if [ "$have" != "$pin" ]; then
		echo "install-deps: npm ci in tests/e2e (playwright-core $pin)"
		(cd "$here/tests/e2e" && npm ci --no-audit --no-fund --loglevel=error)
	fi
fi
