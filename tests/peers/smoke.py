"""Smoke test for the LLM test peers (stdlib only; any python3 works).

Starts fakellm (tool_turn.yaml) and the xllamacpp SmolLM2 server on free
loopback ports via the launcher scripts, checks the wire behaviour documented
in NOTES.md, stops both, and prints "N passed, N failed". Exit 0 iff all pass.
Run install.sh first.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ANTHROPIC_HEADERS = {
    "content-type": "application/json",
    "x-api-key": "sk-test",
    "anthropic-version": "2023-06-01",
}
TOOLS = [
    {
        "name": "http_request",
        "description": "Make an HTTP request",
        "input_schema": {
            "type": "object",
            "properties": {"method": {"type": "string"}, "url": {"type": "string"}},
            "required": ["method", "url"],
        },
    }
]

results: list[tuple[str, bool, str]] = []


def check(name: str, cond: bool, detail: str = "") -> None:
    results.append((name, bool(cond), detail))
    print(f"{'ok  ' if cond else 'FAIL'} {name}" + (f"  ({detail})" if detail and not cond else ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    line = p.stdout.readline() if ready else ""
    if not line.startswith("READY "):
        p.kill()
        p.wait()
        raise RuntimeError(f"{cmd} did not print READY within {timeout}s (got {line!r})")
    return p


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def post(port: int, path: str, body: dict, headers: dict | None = None) -> tuple[int, str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", path, json.dumps(body), headers or ANTHROPIC_HEADERS)
    r = c.getresponse()
    return r.status, r.read().decode()


def sse(raw: str) -> list[tuple[str | None, dict | str]]:
    out = []
    for block in raw.strip().split("\n\n"):
        ev, data = None, None
        for ln in block.splitlines():
            if ln.startswith("event: "):
                ev = ln[7:]
            elif ln.startswith("data: "):
                data = ln[6:]
        if data is not None:
            out.append((ev, data if data == "[DONE]" else json.loads(data)))
    return out


def test_fakellm() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{free_port()}/x"
    p = start([os.path.join(HERE, "fakellm_server.sh"), os.path.join(HERE, "tool_turn.yaml"), str(port)],
              {"LG_TOOL_URL": url})
    try:
        t1 = {"model": "claude-sonnet-4-5", "max_tokens": 256, "tools": TOOLS,
              "messages": [{"role": "user", "content": "Fetch the test URL."}]}
        s, raw = post(port, "/v1/messages", t1)
        m = json.loads(raw)
        check("fakellm turn1 status 200", s == 200, raw)
        check("fakellm turn1 stop_reason tool_use", m.get("stop_reason") == "tool_use", raw)
        blocks = m.get("content", [])
        check("fakellm turn1 single tool_use block",
              len(blocks) == 1 and blocks[0]["type"] == "tool_use" and blocks[0]["name"] == "http_request"
              and blocks[0]["input"] == {"method": "GET", "url": url}, raw)
        tu = blocks[0]
        t2 = dict(t1, messages=t1["messages"] + [
            {"role": "assistant", "content": [tu]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu["id"], "content": "HTTP 200"}]},
        ])
        s, raw = post(port, "/v1/messages", t2)
        m = json.loads(raw)
        check("fakellm turn2 end_turn text",
              s == 200 and m.get("stop_reason") == "end_turn" and m["content"][0]["type"] == "text", raw)
        check("fakellm usage keys", set(m.get("usage", {})) == {"input_tokens", "output_tokens"}, raw)

        # Stateless: a repeat of turn 1 still gets the tool call.
        s, raw = post(port, "/v1/messages", t1)
        check("fakellm turn1 repeatable", json.loads(raw).get("stop_reason") == "tool_use", raw)

        s, raw = post(port, "/v1/messages", dict(t1, stream=True))
        evs = sse(raw)
        names = [e for e, _ in evs]
        check("fakellm stream turn1 events",
              names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
              and "content_block_start" in names, str(names))
        pj = "".join(d["delta"]["partial_json"] for e, d in evs
                     if e == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
        check("fakellm stream input_json_delta reassembles", pj and json.loads(pj) == {"method": "GET", "url": url}, pj)
        md = [d for e, d in evs if e == "message_delta"][0]
        check("fakellm stream stop_reason tool_use", md["delta"]["stop_reason"] == "tool_use", str(md))

        s, raw = post(port, "/v1/messages", dict(t2, stream=True))
        evs = sse(raw)
        text = "".join(d["delta"]["text"] for e, d in evs
                       if e == "content_block_delta" and d["delta"]["type"] == "text_delta")
        md = [d for e, d in evs if e == "message_delta"][0]
        check("fakellm stream turn2 text + end_turn",
              text.startswith("Done:") and md["delta"]["stop_reason"] == "end_turn", raw[-300:])

        s, raw = post(port, "/v1/messages", t1, dict(ANTHROPIC_HEADERS, **{"x-api-key": "sk-fakellm-invalid"}))
        check("fakellm auth_error rule -> 401", s == 401 and json.loads(raw)["type"] == "error", raw)
    finally:
        stop(p)


def test_llama() -> None:
    port = free_port()
    p = start([os.path.join(HERE, "llama_server.sh"), str(port)], {})
    try:
        body = {"model": "smollm2", "max_tokens": 16,
                "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}]}
        s, raw = post(port, "/v1/messages", body)
        m = json.loads(raw)
        check("llama anthropic 200 message", s == 200 and m.get("type") == "message", raw)
        check("llama anthropic text block",
              m["content"] and m["content"][0]["type"] == "text" and m["content"][0]["text"], raw)
        check("llama anthropic stop_reason", m.get("stop_reason") in ("end_turn", "max_tokens"), raw)
        check("llama anthropic usage",
              {"input_tokens", "output_tokens"} <= set(m.get("usage", {})), raw)
        s2, raw2 = post(port, "/v1/messages", body)
        check("llama greedy by default (repeatable)",
              json.loads(raw2)["content"] == m["content"], raw2)

        s, raw = post(port, "/v1/messages", dict(body, stream=True))
        evs = sse(raw)
        names = [e for e, _ in evs]
        check("llama anthropic stream events",
              s == 200 and names[0] == "message_start" and names[-1] == "message_stop"
              and "content_block_delta" in names and "message_delta" in names, str(names))

        s, raw = post(port, "/v1/chat/completions", body, {"content-type": "application/json"})
        m = json.loads(raw)
        check("llama openai chat completion",
              s == 200 and isinstance(m["choices"][0]["message"]["content"], str)
              and "prompt_tokens" in m["usage"], raw)
    finally:
        stop(p)


def main() -> int:
    for t in (test_fakellm, test_llama):
        try:
            t()
        except Exception as e:  # a crash counts as one failure
            check(t.__name__, False, repr(e))
    passed = sum(1 for _, ok, _ in results if ok)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
