#!/usr/bin/env bash
# Installs modeld, modelctl, the systemd units, the sysusers entry and shell completions.
#   scripts/install.sh [--prefix /usr/local] [--destdir DIR]
# With --destdir it only stages files (for packaging); otherwise it also creates the modeld user and
# reloads systemd. Enable with: systemctl enable --now modeld.socket modeld-control.socket
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=/usr/local
destdir=
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --destdir) destdir="$2"; shift 2 ;;
    *) echo "usage: $0 [--prefix DIR] [--destdir DIR]" >&2; exit 2 ;;
  esac
done
[ -x .build/release/modeld ] || swift build -c release
install -D -m 0755 .build/release/modeld "$destdir$prefix/bin/modeld"
install -D -m 0755 .build/release/modelctl "$destdir$prefix/bin/modelctl"
units="$destdir/etc/systemd/system"
install -d "$units"
for unit in modeld.service modeld.socket modeld-control.socket modeld-ollama.socket; do
  sed "s|/usr/local/bin/modeld|$prefix/bin/modeld|" "systemd/$unit" > "$units/$unit"
  chmod 0644 "$units/$unit"
done
install -D -m 0644 systemd/modeld.sysusers "$destdir/usr/lib/sysusers.d/modeld.conf"
for shell in bash zsh fish; do
  case $shell in
    bash) target="$destdir/usr/share/bash-completion/completions/modelctl" ;;
    zsh) target="$destdir/usr/share/zsh/vendor-completions/_modelctl" ;;
    fish) target="$destdir/usr/share/fish/vendor_completions.d/modelctl.fish" ;;
  esac
  install -d "$(dirname "$target")"
  .build/release/modelctl --generate-completion-script $shell > "$target"
done
if [ -z "$destdir" ]; then
  command -v systemd-sysusers >/dev/null && systemd-sysusers /usr/lib/sysusers.d/modeld.conf || true
  [ -d /run/systemd/system ] && systemctl daemon-reload || true
  echo "installed; start with: systemctl enable --now modeld.socket modeld-control.socket (add modeld-ollama.socket for Ollama clients on 127.0.0.1:11434)"
fi
