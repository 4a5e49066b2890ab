"""Load generation with wrk: installing it, writing its Lua scripts, running it, reading it."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

RESULT_MARK = "BENCH_RESULT "

# done() runs once, after every thread has finished; it prints one JSON line we parse.
DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('%s{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "mean_us": %.1f}\\n', "RESULT_MARK", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
""".replace("RESULT_MARK", RESULT_MARK)

# Each thread pre-formats every request once, then rotates over them from its own offset. The
# Authorization header presents the caller's key, or (caller nil) the request's own key.
POST_ROTATING = """
local caller = {caller}
local scheme = "{scheme}"
local keys = {{
{keys}
}}
local prepared = {{}}
local position = 0
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  for i, key in ipairs(keys) do
    local headers = {{["Authorization"] = scheme .. " " .. (caller or key),
                     ["Content-Type"] = "application/json"}}
    prepared[i] = wrk.format("POST", "{path}", headers, '{{"key": "' .. key .. '"}}')
  end
  position = (id * 997) % #prepared
end

function request()
  position = position % #prepared + 1
  return prepared[position]
end
"""


def ensure_wrk() -> str:
    """wrk's path, installing Debian's package when it is missing; returns its version line."""
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk")
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], check=True)
            subprocess.run(install, check=True)
    # `wrk -v` prints its version and exits 1: the exit status means nothing here.
    version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (version.stdout or version.stderr).splitlines()[0].strip()


# What may be embedded in the Lua source unescaped: no quote, backslash, space or newline.
_LUA_SAFE_KEY = re.compile(r"[0-9A-Za-z_.]+")  # KeyVault's `prefix_body`, the library's `prefix.secret`
_LUA_SAFE_SCHEME = re.compile(r"[A-Za-z][0-9A-Za-z-]*")  # Bearer, Api-Key
_LUA_SAFE_PATH = re.compile(r"/[0-9A-Za-z_./-]*")


def write_post_script(path: Path, caller: str | None, keys: list[str],
                      url_path: str = "/api/verify/", scheme: str = "Bearer") -> Path:
    """POST {"key": <key>} rotating over keys, with `Authorization: <scheme> <caller>`; with
    caller None each request presents its own key in that header (the Django baseline)."""
    if not keys:
        raise ValueError("no keys to rotate over")
    for value in [*([caller] if caller is not None else []), *keys]:
        if not _LUA_SAFE_KEY.fullmatch(value):
            raise ValueError("keys are embedded in Lua strings unescaped: ASCII letters, digits, "
                             "'_' and '.' only")
    if not _LUA_SAFE_SCHEME.fullmatch(scheme) or not _LUA_SAFE_PATH.fullmatch(url_path):
        raise ValueError(f"unsafe scheme or path for the Lua script: {scheme!r} {url_path!r}")
    body = POST_ROTATING.format(caller="nil" if caller is None else f'"{caller}"',
                                scheme=scheme, path=url_path,
                                keys=",\n".join(f'  "{key}"' for key in keys))
    path.write_text(body + DONE)
    return path


def write_get_script(path: Path) -> Path:
    path.write_text(DONE)
    return path


@dataclass
class Run:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict
    cpu_s_per_1000: float | None = None  # bench.cpu: every process involved but wrk

    def as_dict(self) -> dict:
        return {"rps": round(self.rps, 1), "p50_ms": round(self.p50_ms, 3),
                "p90_ms": round(self.p90_ms, 3), "p99_ms": round(self.p99_ms, 3),
                "max_ms": round(self.max_ms, 3), "requests": self.requests,
                "non_2xx": self.non_2xx, "socket_errors": self.socket_errors,
                "cpu_s_per_1000": (round(self.cpu_s_per_1000, 4)
                                   if self.cpu_s_per_1000 is not None else None)}


class LoadError(RuntimeError):
    """wrk did not run, or the server answered something other than 2xx."""


def wrk_seconds(duration: float) -> int:
    """wrk takes whole seconds only (`-d 0.5s` is a usage error): round up, at least 1. The
    figures stay right: wrk reports the time it really ran, which the rates are divided by."""
    return max(1, math.ceil(duration))


def run_wrk(url: str, script: Path, duration: float, connections: int, threads: int) -> Run:
    argv = ["wrk", "--latency", "-t", str(threads), "-c", str(connections),
            "-d", f"{wrk_seconds(duration)}s", "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        raise LoadError(f"wrk failed ({done.returncode}): {' '.join(argv)}\n"
                        f"{done.stdout}\n{done.stderr}")
    raw = json.loads(lines[-1][len(RESULT_MARK):])
    seconds = raw["duration_us"] / 1e6
    return Run(
        rps=raw["requests"] / seconds,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        requests=raw["requests"],
        non_2xx=raw["status"],
        socket_errors={name: raw[name] for name in ("connect", "read", "write", "timeout")},
    )
