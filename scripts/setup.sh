#!/usr/bin/env bash
# Installs and starts what the test suite needs on a fresh Debian machine:
# SoftHSM2 (PKCS#11 tests), pcscd + vsmartcard-vpcd (real PC/SC card tests),
# Chromium (console browser tests). PostgreSQL and Mosquitto are expected to
# run already; this script starts them when they are installed but stopped.
# Safe to run again: it only installs what is missing and only as root.
set -euo pipefail

packages=(softhsm2 opensc pcscd vsmartcard-vpcd libpcsclite-dev pcsc-tools chromium chromium-driver)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "setup: missing Debian packages ${missing[*]}; run as root to install them" >&2
	else
		echo "setup: installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
fi

# PostgreSQL: restart the cluster when it is installed but not answering.
if command -v pg_isready >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
	if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
		pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
	fi
fi

# Mosquitto on 127.0.0.1:1883.
if command -v mosquitto >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
	mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
fi

# pcscd with the vsmartcard virtual reader (vpcd listens on 127.0.0.1:35963
# for the emulated card to connect).
if command -v pcscd >/dev/null && ! pgrep -x pcscd >/dev/null; then
	if [[ $(id -u) -eq 0 ]]; then
		pcscd --auto-exit=0 2>/dev/null || pcscd || true
	fi
fi
exit 0
