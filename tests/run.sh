#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test against the real binary.
# Installs what the tests need when it is missing, so it passes on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# System packages the tests use (none are needed by the gateway itself).
need_apt=()
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs npm)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
# The mail peer (tests/peers/mail): dovecot for IMAP + LMTP, openssl for its test certificate.
{ [ -x /usr/lib/dovecot/imap ] && [ -x /usr/lib/dovecot/lmtp ]; } || need_apt+=(dovecot-imapd dovecot-lmtpd)
command -v openssl >/dev/null || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

log "browser test driver (playwright-core, no browser download: it drives Debian's chromium)"
npm ci --prefix tests/browser --silent --no-audit --no-fund

log "Python test peers (fakellm, llama.cpp with SmolLM2, aiosmtpd for the mail peer)"
tests/peers/install.sh

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
cargo nextest run --workspace --locked --no-fail-fast

# WhatsApp linked-device mode is an opt-in feature (a long build): lint and unit-test it so it
# cannot rot unseen.
log "feature whatsapp-linked: clippy and unit tests"
cargo clippy -p loop-gateway-actors --features whatsapp-linked --all-targets --locked -- -D warnings
cargo nextest run -p loop-gateway-actors --features whatsapp-linked --locked --no-fail-fast
