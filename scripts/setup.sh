#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (or a developer's): system packages when missing,
# a .venv, and dbrunbook installed into it in editable mode with its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  postgresql-15 postgresql-client-15       # PostgreSQL server and client binaries (pg_config finds them)
  mariadb-server mariadb-client mariadb-backup
  openssh-server openssh-client            # the sandbox's sshd and ssh-keygen
  python3-venv                             # hosts.setup builds venvs with the host's python3
  age zstd                                 # recovering backup objects by hand (backup issue)
  util-linux procps                        # runuser, setsid, kill
  sudo                                     # the sandbox's pg-main-2 logs in as another user and sudoes to the OS user
  systemd                                  # systemd-analyze checks the rendered timers (schedule.render)
  chromium                                 # headless, renders drill.report in its test
  sysbench                                 # the MariaDB write load of the tests' load harness (pgbench comes with postgresql-15)
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start the distribution's own servers: the sandbox starts its own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the project's metadata changed.
stamp=.venv/.dbrunbook-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip 'setuptools>=77' wheel
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  echo "$want" > "$stamp"
fi
