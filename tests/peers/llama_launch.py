"""Start xllamacpp's native llama.cpp HTTP server in the foreground.

Usage: python llama_launch.py PORT

Run it with the peers venv's python (see llama_server.sh). Prints exactly one
line on stdout, `READY <port>`, once the model is loaded and the port accepts
connections; llama.cpp logging (if enabled) goes to stderr. Exits on
SIGTERM/SIGINT.

Environment:
  LG_PEER_HOST          bind address (default 127.0.0.1)
  LG_LLAMA_MODEL        GGUF path (default $LG_PEERS_VENV/models/SmolLM2-135M-Instruct.Q4_1.gguf)
  LG_LLAMA_ALIAS        model name reported in responses / /v1/models (default smollm2)
  LG_LLAMA_CTX          context size in tokens (default 2048)
  LG_LLAMA_N_PREDICT    server-side cap on generated tokens (default 512; -1 = none)
  LG_LLAMA_THREADS      CPU threads (default 1: steadier than 2 on a busy 2-core box; -1 = auto)
  LG_LLAMA_PARALLEL     parallel slots (default 1; n_ctx is split across slots)
  LG_LLAMA_TEMP         default sampling temperature (default 0 = greedy, so
                        replies are repeatable; a request's "temperature" wins)
  LG_LLAMA_SEED         default sampling seed (default 42)
  LG_LLAMA_API_KEY      if set, the server requires it (x-api-key or Bearer)
  LG_LLAMA_VERBOSITY    llama.cpp log verbosity (default 0 = silent, 3 = info)
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading

DEFAULT_VENV = "/var/tmp/loop-gateway-peers-venv"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    port = int(sys.argv[1])
    host = os.environ.get("LG_PEER_HOST", "127.0.0.1")
    venv = os.environ.get("LG_PEERS_VENV", DEFAULT_VENV)
    model = os.environ.get("LG_LLAMA_MODEL", os.path.join(venv, "models", GGUF_NAME))
    if not os.path.isfile(model):
        print(f"llama_launch: model not found: {model} (run install.sh)", file=sys.stderr)
        return 2

    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = model
    p.hostnames = [host]
    p.port = port
    p.model_alias = {os.environ.get("LG_LLAMA_ALIAS", "smollm2")}
    p.n_ctx = int(os.environ.get("LG_LLAMA_CTX", "2048"))
    p.n_predict = int(os.environ.get("LG_LLAMA_N_PREDICT", "512"))
    p.n_parallel = int(os.environ.get("LG_LLAMA_PARALLEL", "1"))
    threads = int(os.environ.get("LG_LLAMA_THREADS", "1"))
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.sampling.temp = float(os.environ.get("LG_LLAMA_TEMP", "0"))
    p.sampling.seed = int(os.environ.get("LG_LLAMA_SEED", "42"))
    p.verbosity = int(os.environ.get("LG_LLAMA_VERBOSITY", "0"))
    if os.environ.get("LG_LLAMA_API_KEY"):
        p.api_keys = [os.environ["LG_LLAMA_API_KEY"]]

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    try:
        # Returns once the model is loaded and the HTTP thread is listening.
        server = xlc.Server(p)
    except RuntimeError as e:  # e.g. port already in use, bad model
        print(f"llama_launch: {e} (port {port} in use?)", file=sys.stderr)
        return 1

    with socket.create_connection((host, port), timeout=5):
        pass
    print(f"READY {port}", flush=True)
    print(f"llama_launch: serving {model} at {server.listening_address}", file=sys.stderr)

    while not stop.wait(1.0):
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    # The native server threads have no clean stop API; skip interpreter
    # teardown (which can hang/crash on them) and exit immediately.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
