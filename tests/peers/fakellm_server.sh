#!/usr/bin/env bash
# Usage: fakellm_server.sh RULES_FILE PORT
# Runs fakellm in the foreground; prints "READY <port>" on stdout when the
# port accepts connections. ${NAME} placeholders in RULES_FILE are filled from
# the environment. See NOTES.md.
set -euo pipefail
if [ "$#" -ne 2 ]; then
  echo "usage: $0 RULES_FILE PORT" >&2
  exit 2
fi
VENV="${LG_PEERS_VENV:-/var/tmp/loop-gateway-peers-venv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "fakellm_server.sh: no venv at $VENV (run $HERE/install.sh)" >&2
  exit 2
fi
exec "$VENV/bin/python" -u "$HERE/fakellm_launch.py" "$1" "$2"
