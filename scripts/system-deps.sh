#!/usr/bin/env bash
# Install the system services the tests and the demo start themselves (never as daemons here).
set -euo pipefail
missing=()
# redis-server also runs the sentinels of tests/integration/test_sentinel.py (`redis-server CONF --sentinel`,
# what Debian's redis-sentinel package starts): no other package needed for them.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v pebble >/dev/null 2>&1 || missing+=(pebble)
command -v named >/dev/null 2>&1 || missing+=(bind9)
command -v nsupdate >/dev/null 2>&1 || missing+=(bind9-dnsutils)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${missing[*]} (install them with apt-get as root)" >&2
    exit 1
  fi
  echo "installing system packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exit 0
