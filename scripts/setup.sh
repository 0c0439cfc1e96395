#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/deps.txt that are not installed yet.
# Nothing else is downloaded, here or at run time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t pkgs < <(grep -v '^\s*#' "$here/deps.txt" | grep -v '^cmd ' | sed '/^\s*$/d')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# "cmd A B: PKG..." lines: the packages only when one of the commands is missing
while read -r line; do
  cmds=${line#cmd }; cmds=${cmds%%:*}; want=${line#*:}
  for c in $cmds; do command -v "$c" >/dev/null || { missing+=($want); break; }; done
done < <(grep '^cmd ' "$here/deps.txt")
[ ${#missing[@]} -eq 0 ] && { echo "setup: all ${#pkgs[@]} Debian packages present"; exit 0; }
echo "setup: installing ${missing[*]}"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
