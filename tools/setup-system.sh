#!/usr/bin/env bash
# Installs and starts what the project needs from the operating system (Debian/Ubuntu):
# SoftHSM2 (the HSM stand-in), a PostgreSQL server on 127.0.0.1:5432 that the test user can
# reach, and Debian's Chromium with Japanese fonts for the page tests (tests/fixtures/browser.py).
# Idempotent: does nothing when everything is already there. Needs root (or sudo) only when
# something is missing.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
updated=0
apt_install() {
  if [ "$updated" = 0 ]; then as_root apt-get update -qq; updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v openssl >/dev/null 2>&1; then
  echo "installing openssl (the tests cross-check certificates, CRLs and OCSP with it)"
  apt_install openssl
fi

if ! command -v softhsm2-util >/dev/null 2>&1; then
  echo "installing softhsm2"
  apt_install softhsm2
fi

# Page tests drive Debian's Chromium (a browser build downloaded by `playwright install` is not an
# option: only the package registries are reachable). fonts-noto-cjk: Japanese text renders as
# boxes without it.
if [ ! -x /usr/lib/chromium/chromium ]; then
  echo "installing chromium (headless page tests)"
  apt_install chromium
fi
if ! dpkg-query -W -f='${Status}' fonts-noto-cjk 2>/dev/null | grep -q 'ok installed'; then
  echo "installing fonts-noto-cjk (Japanese text in page screenshots)"
  apt_install fonts-noto-cjk
fi

pg_ok() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }

if ! pg_ok; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "installing postgresql"
    apt_install postgresql postgresql-client
  fi
  version=$(ls /etc/postgresql | sort -n | tail -1)
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if ! pg_ok; then
    # A fresh cluster asks loopback clients for a password: trust loopback, as the dev machines do.
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    echo "allowing trusted loopback connections in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    sleep 1
  fi
  pg_ok || { echo "PostgreSQL on 127.0.0.1:5432 is still unreachable as user postgres" >&2; exit 1; }
fi
echo "system ready: softhsm2 $(softhsm2-util --version), PostgreSQL on 127.0.0.1:5432, $(/usr/lib/chromium/chromium --version)"
