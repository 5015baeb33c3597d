"""Shared stage cache benchmark, side by side in one run: a cold build of a recipe (fresh store and
outputs, the package cache shared so the network is not measured) against the same build on a
fresh store that pulls every stage from an OCI registry (Debian's docker-registry, started here
on 127.0.0.1), runs interleaved; medians, the ratio, and the bytes pushed and pulled.

Usage (root): .venv/bin/python bench/stage_cache.py [--runs N] [--recipe R]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    (tmp / "registry.yml").write_text(f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: "
                                      f"{{rootdirectory: {tmp / 'registry'}}}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(tmp / "registry.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the registry did not start")


def env_for(tmp: Path, name: str) -> dict:
    cache = tmp / name / "cache"
    cache.mkdir(parents=True)
    for shared in ("apt-archives", "apt-lists", "archive"):
        if (ROOT / "cache" / shared).exists():
            os.symlink(ROOT / "cache" / shared, cache / shared)
    return dict(os.environ, DISTONET_CACHE=str(cache), DISTONET_OUTPUT=str(tmp / name / "output"),
                PYTHONDONTWRITEBYTECODE="1")


def timed(env: dict, *args: str) -> tuple[float, str]:
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return time.monotonic() - start, p.stderr


def pulled_bytes(env: dict, recipe: str) -> int:
    stages = Path(env["DISTONET_CACHE"]) / "stages"
    total = 0
    for stamp in stages.glob("*/stamp.json"):
        total += json.loads(stamp.read_text()).get("pulled_bytes", 0)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--recipe", default="minimal")
    a = ap.parse_args()
    results: dict[str, list[float]] = {"cold": [], "from the registry": []}
    pushed = pulled = 0
    for run in range(a.runs):
        with tempfile.TemporaryDirectory(prefix="distonet-bench-", dir=ROOT / "cache") as tmp:
            tmp = Path(tmp)
            proc, port = start_registry(tmp)
            try:
                cache = f"oci+http://127.0.0.1:{port}/bench"
                cold_env = env_for(tmp, "cold")
                # the cold build pushes every stage it makes, as a CI runner with cache= would
                seconds, _ = timed(cold_env, "doit", "build", f"recipe={a.recipe}", f"cache={cache}")
                results["cold"].append(seconds)
                pushed = sum(f.stat().st_size for f in (tmp / "registry").rglob("data") if f.is_file())
                fresh_env = env_for(tmp, "fresh")
                seconds, said = timed(fresh_env, "doit", "build", f"recipe={a.recipe}", f"cache={cache}")
                ran = [r[0] for r in map(str.split, said.splitlines())
                       if len(r) >= 3 and r[-1] == "run" and r[0] != "output"]
                if ran:
                    raise SystemExit(f"stages ran on the fresh store ({', '.join(ran)}):\n{said[-2000:]}")
                results["from the registry"].append(seconds)
                pulled = pulled_bytes(fresh_env, a.recipe)
            finally:
                proc.terminate()
                proc.wait()
                shutil.rmtree(tmp / "cold", ignore_errors=True)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in results.items()), flush=True)
    cold = statistics.median(results["cold"])
    print(f"\n| case | median s | × cold |\n|---|---:|---:|")
    for k, v in results.items():
        print(f"| {k} | {statistics.median(v):.1f} | {statistics.median(v) / cold:.2f} |")
    print(f"\npushed to the registry: {pushed / 2**20:.0f} MiB (blobs); pulled by the fresh store: {pulled / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
