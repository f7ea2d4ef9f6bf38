#!/usr/bin/env bash
# Usage: llama_server.sh PORT
# Runs xllamacpp's llama.cpp server (SmolLM2-135M) in the foreground; prints
# "READY <port>" on stdout once the model is loaded and the port accepts
# connections. Tunables (LG_LLAMA_*) are listed in llama_launch.py / NOTES.md.
set -euo pipefail
if [ "$#" -ne 1 ]; then
  echo "usage: $0 PORT" >&2
  exit 2
fi
VENV="${LG_PEERS_VENV:-/var/tmp/loop-gateway-peers-venv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "llama_server.sh: no venv at $VENV (run $HERE/install.sh)" >&2
  exit 2
fi
export LG_PEERS_VENV="$VENV"
exec "$VENV/bin/python" -u "$HERE/llama_launch.py" "$1"
