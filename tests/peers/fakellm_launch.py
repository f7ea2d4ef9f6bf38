"""Start fakellm in the foreground on HOST:PORT with a rules file.

Usage: python fakellm_launch.py RULES_FILE PORT

Run it with the peers venv's python (see fakellm_server.sh). Prints exactly
one line on stdout, `READY <port>`, once the port accepts connections; all
logging goes to stderr. Exits on SIGTERM/SIGINT.

Placeholders: every `${NAME}` in the rules file is replaced with the value of
environment variable NAME before fakellm loads it (fakellm itself has no
templating). An unset NAME is an error (exit 2). Other `$` text is left as is.

Environment:
  LG_PEER_HOST        bind address (default 127.0.0.1)
  LG_FAKELLM_LOG      uvicorn log level (default warning)
"""

from __future__ import annotations

import os
import re
import socket
import sys
import tempfile
import threading
import time

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _render(text: str) -> str:
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in os.environ})
    if missing:
        print(
            "fakellm_launch: unset placeholder(s) in rules file: "
            + ", ".join("${%s}" % m for m in missing),
            file=sys.stderr,
        )
        raise SystemExit(2)
    return _PLACEHOLDER.sub(lambda m: os.environ[m.group(1)], text)


def _wait_and_announce(server, host: str, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if getattr(server, "started", False):
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    print(f"READY {port}", flush=True)
                    return
            except OSError:
                pass
        if getattr(server, "should_exit", False):
            return
        time.sleep(0.02)
    print(f"fakellm_launch: port {port} not accepting after 60s", file=sys.stderr)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    rules_path, port_s = sys.argv[1], sys.argv[2]
    port = int(port_s)
    host = os.environ.get("LG_PEER_HOST", "127.0.0.1")

    with open(rules_path, encoding="utf-8") as f:
        original = f.read()
    rendered = _render(original)

    if rendered == original:
        cfg = os.path.abspath(rules_path)  # POST /_fakellm/reload re-reads it
    else:
        # Fixed per-port path (not a fresh temp dir): uvicorn re-raises
        # SIGTERM after shutdown, so no cleanup code would run; this way
        # repeated launches overwrite instead of piling up files.
        cfg = os.path.join(tempfile.gettempdir(), f"lg-fakellm-{port}.yaml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(rendered)
    # fakellm.server reads FAKELLM_CONFIG at import time (and again on
    # POST /_fakellm/reload), so it must be set before the import below.
    os.environ["FAKELLM_CONFIG"] = cfg

    from fakellm.config import load_config

    try:
        loaded = load_config(cfg)
    except Exception as e:  # invalid YAML / unknown keys
        print(f"fakellm_launch: bad rules file {rules_path}: {e}", file=sys.stderr)
        return 2
    print(
        f"fakellm_launch: {len(loaded.rules)} rule(s) from {rules_path}, "
        f"serving http://{host}:{port}",
        file=sys.stderr,
    )

    import uvicorn

    config = uvicorn.Config(
        "fakellm.server:app",
        host=host,
        port=port,
        workers=1,
        log_level=os.environ.get("LG_FAKELLM_LOG", "warning"),
        lifespan="off",
    )
    server = uvicorn.Server(config)
    threading.Thread(
        target=_wait_and_announce, args=(server, host, port), daemon=True
    ).start()
    server.run()  # blocks; on SIGINT/SIGTERM shuts down, then re-raises it
    return 0 if getattr(server, "started", False) else 1


if __name__ == "__main__":
    sys.exit(main())
