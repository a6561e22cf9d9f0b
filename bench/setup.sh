#!/usr/bin/env bash
# Installs the peers the benchmark suite compares against (`npm run bench:setup`):
# Debian's nats-server and redis-server, and the npm clients into bench/peers/ (its own
# package.json + lock, so the main package and CI's `npm ci` stay lean).
# Whatever fails to install is skipped by `npm run bench` with a note; it is never faked.
set -uo pipefail
cd "$(dirname "$0")"

need=""
command -v nats-server >/dev/null 2>&1 || need="$need nats-server"
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
if [ -n "$need" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo_=""
    [ "$(id -u)" = "0" ] || sudo_="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_ apt-get -o DPkg::Lock::Timeout=300 update -qq && $sudo_ apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $need ||
      echo "bench:setup: could not install$need; those peers will be skipped" >&2
  else
    echo "bench:setup: no apt-get; install$need yourself, or those peers will be skipped" >&2
  fi
fi

cd peers
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund || echo "bench:setup: npm ci in bench/peers failed; missing clients will be skipped" >&2
else
  npm install --no-audit --no-fund || echo "bench:setup: npm install in bench/peers failed" >&2
fi
