#!/usr/bin/env bash
# Usage: mail_server.sh --dir DIR --imap-port P --lmtp-port P --smtp-port P
#                       [--imaps-port P] [--smtps-port P] [--tls] [--smtp-auth-required]
#                       USER:PASSWORD [USER:PASSWORD ...]
# Runs dovecot (IMAP + LMTP) and an aiosmtpd SMTP front in the foreground, everything
# under DIR; prints "READY imap=P lmtp=P smtp=P ..." on stdout once all accept
# connections. Commands on stdin (stop|kill|start|restart imap|lmtp|smtp); EOF on stdin
# or SIGTERM stops everything. See mail_launch.py and ../NOTES.md.
set -euo pipefail
VENV="${LG_PEERS_VENV:-/var/tmp/loop-gateway-peers-venv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "mail_server.sh: no venv at $VENV (run $HERE/../install.sh)" >&2
  exit 2
fi
exec "$VENV/bin/python" -u "$HERE/mail_launch.py" "$@"
