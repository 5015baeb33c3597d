"""distonet against its peers and against the floor, side by side in one run, interleaved:

  floor        bench/floor.sh: mmdebstrap of minimal's packages, mkfs.ext4 -d, a GPT disk with
               GRUB EFI, qemu-img convert (one disk, no cache)
  cold         distonet `minimal` on a fresh stage store: rootfs.img, disk.raw (BIOS+UEFI),
               qcow2, kernel, initrd, sbom (the package cache shared: downloads not measured)
  cold-qcow2   the same, the qcow2 output alone
  dib-u        diskimage-builder `disk-image-create -t qcow2 -u debian-minimal vm`
  dib          the same with DIB's default, compressed qcow2
  noop         distonet again, nothing changed
  overlay      one overlay file changed, rebuilt (recipe bench-overlay, built once before)
  extends      a recipe that extends minimal with one package layer, minimal built
  outputs-n1   seven outputs remade after a seal change, doit -n 1
  outputs-n2   the same, -n 2
and the peak resident memory of distonet's own processes during the cold build. Each case runs
`--runs` times (default 3); the cases interleave so the machine's drift hits all alike. Medians,
paired ratios and per-stage times go to bench/results.md (and stdout).

Usage (root, on a quiet machine): .venv/bin/python bench/peers.py [--runs N] [--only case,case]
diskimage-builder comes from PyPI with distonet (pyproject); its kpartx and dmsetup need
device-mapper, which this kernel may lack: bench/standins/ stands in for them (and for sudo).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

CASES = ["floor", "cold", "cold-qcow2", "dib-u", "dib", "noop", "overlay", "extends", "outputs-n1", "outputs-n2"]
MULTI = ("extends: minimal\nhostname: {host}\nreplace: [outputs]\n"
         "outputs: {{rootfs: {{}}, kernel: {{}}, disk: {{esp_mib: 32}}, qcow2: {{}}, sbom: {{}}, squashfs: {{}}, "
         "nfsroot: {{}}}}\n")


class Measure:
    """Wall, user and sys time of a command and its children; with `rss`, the peak resident
    memory of the Python processes below it (distonet's own, not mmdebstrap's or dpkg's)."""

    def __init__(self, rss: bool = False):
        self.rss, self.peak = rss, 0

    def _watch(self, pid: int, stop: threading.Event) -> None:
        while not stop.is_set():
            for p in _tree(pid):
                try:
                    status = Path(f"/proc/{p}/status").read_text()
                    exe = os.readlink(f"/proc/{p}/exe")
                except OSError:
                    continue
                if "python" in Path(exe).name:
                    hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
                    self.peak = max(self.peak, hwm * 1024)
            stop.wait(0.25)

    def run(self, argv: list[str], **kw) -> dict:
        # each case starts on a settled disk: what the one before left to write back or to
        # discard (diskimage-builder deletes GBs at its end) is not counted against the next
        os.sync()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(proc.pid, stop), daemon=True)
        if self.rss:
            watcher.start()
        output, _ = proc.communicate()
        wall = time.monotonic() - start
        stop.set()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            log = ROOT / "cache" / "bench-failed.log"
            log.write_text(output)
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}); its whole output: {log}\n{output[-3000:]}")
        return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
                **({"rss": self.peak} if self.rss else {}), "output": output}


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except OSError:
            continue
    return out


class Distonet:
    """A fresh stage store and output folder sharing this checkout's package cache."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.recipes = tmp / "recipes"
        shutil.copytree(ROOT / "recipes", self.recipes)
        (tmp / "overlays/bench/etc").mkdir(parents=True)
        (tmp / "overlays/bench/etc/motd").write_text("benchmark 0\n")
        (self.recipes / "bench-overlay.yaml").write_text("extends: minimal\noverlays: [bench]\n")
        (self.recipes / "bench-qcow2.yaml").write_text("extends: minimal\nreplace: [outputs]\n"
                                                        "outputs: {kernel: {}, qcow2: {}}\n")
        (self.recipes / "bench-late.yaml").write_text("extends: minimal\npackages: {late: [file]}\n")
        (self.recipes / "bench-multi.yaml").write_text(MULTI.format(host="multi0"))
        cache = tmp / "cache"
        cache.mkdir()
        for shared in ("apt-archives", "apt-lists", "archive"):
            if (ROOT / "cache" / shared).exists():
                os.symlink(ROOT / "cache" / shared, cache / shared)
        self.env = dict(os.environ, DISTONET_RECIPES=str(self.recipes), DISTONET_CACHE=str(cache),
                        DISTONET_OUTPUT=str(tmp / "output"), PYTHONDONTWRITEBYTECODE="1")

    def settle(self) -> None:
        """Wait for the removal a build leaves behind it (output/.trash/): it is not the next case's."""
        trash = self.tmp / "output" / ".trash"
        deadline = time.monotonic() + 300
        while trash.is_dir() and any(trash.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)

    def doit(self, *args: str, rss: bool = False) -> dict:
        self.settle()
        return Measure(rss).run([sys.executable, "-m", "doit", "run", "--db-file", str(self.tmp / "doit.db"), *args],
                                cwd=ROOT, env=self.env)

    def stage_times(self, recipe: str) -> dict[str, float]:
        m = json.loads((self.tmp / "output" / recipe / "manifest.json").read_text())
        return {**{f"stage {s['name']}": s["seconds"] for s in m["stages"]},
                **{f"output {o['name']}": o["seconds"] for o in m["outputs"]}}


def ran_stages(output: str) -> list[str]:
    """Stages the end-of-build table says were run this time."""
    rows = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "run" and not line.startswith("output"):
            rows.append(parts[0])
    return rows


def dib_env(out: Path) -> dict:
    from distonet.host.apt import default_mirror, default_security_mirror
    env = dict(os.environ, PATH=f"{BENCH / 'standins'}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
               DIB_RELEASE="trixie", DIB_DISTRIBUTION_MIRROR=default_mirror(), TMP_DIR=str(out))
    security = default_security_mirror()
    if security:
        env["DIB_DEBIAN_SECURITY_MIRROR"] = security
    return env


def case(name: str, run_no: int, state: dict) -> dict:
    if name == "floor":
        from distonet.host.apt import default_mirror
        with tempfile.TemporaryDirectory(prefix="bench-floor-", dir=ROOT / "cache") as tmp:
            return Measure().run([str(BENCH / "floor.sh"), tmp, default_mirror()])
    if name in ("dib-u", "dib"):
        with tempfile.TemporaryDirectory(prefix="bench-dib-", dir=ROOT / "cache") as tmp:
            argv = [str(Path(sys.executable).parent / "disk-image-create"), "-t", "qcow2",
                    *(["-u"] if name == "dib-u" else []), "-o", f"{tmp}/image", "debian-minimal", "vm"]
            return Measure().run(argv, env=dib_env(Path(tmp)), cwd=tmp)
    if name in ("cold", "cold-qcow2"):
        d = Distonet(Path(tempfile.mkdtemp(prefix="bench-distonet-", dir=ROOT / "cache")))
        recipe = "minimal" if name == "cold" else "bench-qcow2"
        r = d.doit(f"recipe={recipe}", "build", rss=True)
        r["stages"] = d.stage_times(recipe)
        if name == "cold":
            state["distonet"] = d        # the later cases build on this store
        else:
            shutil.rmtree(d.tmp)
        return r
    d: Distonet = state["distonet"]
    if name == "noop":
        return d.doit("recipe=minimal", "build")
    if name == "overlay":
        d.doit("recipe=bench-overlay", "build")                      # its own outputs, once
        (d.tmp / "overlays/bench/etc/motd").write_text(f"benchmark {run_no + 1}\n")
        return d.doit("recipe=bench-overlay", "build")
    if name == "extends":
        r = d.doit("recipe=bench-late", "build")
        r["ran"] = ran_stages(r["output"])
        return r
    if name in ("outputs-n1", "outputs-n2"):
        if "multi" not in state:
            d.doit("recipe=bench-multi", "build")                     # stages and outputs once
            state["multi"] = 0
        state["multi"] += 1
        (d.recipes / "bench-multi.yaml").write_text(MULTI.format(host=f"multi{state['multi']}"))
        jobs = ["-n", "2", "-P", "process"] if name == "outputs-n2" else []
        return d.doit(*jobs, "recipe=bench-multi", "build")
    raise ValueError(name)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) >> 20
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dib = subprocess.run([sys.executable, "-m", "pip", "show", "diskimage-builder"], capture_output=True,
                         text=True).stdout
    dib_version = next((line.split()[1] for line in dib.splitlines() if line.startswith("Version:")), "?")
    return (f"{os.cpu_count()} cores ({cpu}), {mem} GiB, Debian {debian}, kernel {platform.release()}; "
            f"distonet {commit}, diskimage-builder {dib_version}; trixie images")


def report(results: dict[str, list[dict]], runs: int) -> str:
    med = {c: {k: statistics.median(r[k] for r in rs) for k in ("wall", "user", "sys")}
           for c, rs in results.items() if rs}

    def ratio(a: str, b: str) -> str:
        if a not in results or b not in results or not results[a] or not results[b]:
            return "—"
        pairs = [x["wall"] / y["wall"] for x, y in zip(results[a], results[b])]
        return f"{statistics.median(pairs):.2f}"

    lines = [f"# Benchmark results ({datetime.date.today().isoformat()})", "",
             f"Machine: {machine()}.", "",
             f"`.venv/bin/python bench/peers.py --runs {runs}`: every case {runs} times, interleaved; medians.", "",
             "| case | wall s | user s | sys s |", "|---|---:|---:|---:|"]
    for c in CASES:
        if c in med:
            lines.append(f"| {c} | {med[c]['wall']:.1f} | {med[c]['user']:.1f} | {med[c]['sys']:.1f} |")
    lines += ["", "Paired ratios (median of the per-run ratios) and the targets of the performance issue:", "",
              "| ratio | value | target |", "|---|---:|---|",
              f"| cold / dib-u | {ratio('cold', 'dib-u')} | ≤ 0.75 |",
              f"| cold / floor | {ratio('cold', 'floor')} | ≤ 1.0 |",
              f"| cold-qcow2 / dib-u | {ratio('cold-qcow2', 'dib-u')} | ≤ 0.7 |",
              f"| cold / dib (compressed) | {ratio('cold', 'dib')} | — |",
              f"| overlay / cold | {ratio('overlay', 'cold')} | ≤ 0.10 |",
              f"| outputs-n2 / outputs-n1 | {ratio('outputs-n2', 'outputs-n1')} | ≤ 0.77 (1.3× faster) |"]
    if "noop" in med:
        lines.append(f"| noop wall | {med['noop']['wall']:.2f} s | ≤ 0.5 s |")
    if "cold" in med and "dib-u" in med:
        lines.append(f"| cold sys / dib-u sys | {med['cold']['sys'] / max(med['dib-u']['sys'], 0.01):.2f} | ≤ 1.0 |")
    if results.get("cold"):
        peak = max(r.get("rss", 0) for r in results["cold"] + results.get("cold-qcow2", []))
        lines.append(f"| distonet's peak RSS | {peak / 2**20:.0f} MB | < 200 MB |")
    if results.get("extends"):
        shared = sorted({s for r in results["extends"] for s in r.get("ran", [])
                         if s not in ("packages.late", "seal")})
        lines.append(f"| shared stages run by `extends` | {', '.join(shared) or 'none'} | none |")
    if results.get("cold"):
        lines += ["", "Per step of the cold build (median seconds):", "", "| step | s |", "|---|---:|"]
        for step in results["cold"][0]["stages"]:
            lines.append(f"| {step} | {statistics.median(r['stages'][step] for r in results['cold']):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated cases (cold is needed by the later ones)")
    ap.add_argument("--out", type=Path, default=BENCH / "results.md")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the benchmark builds images: run it as root")
    # as setup.sh does: with PYTHONDONTWRITEBYTECODE set, runs would compile the package each time
    subprocess.run([sys.executable, "-m", "compileall", "-q", "distonet", "dodo.py"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    cases = [c for c in CASES if c in a.only.split(",")]
    results: dict[str, list[dict]] = {c: [] for c in cases}
    for run_no in range(a.runs):
        state: dict = {}
        try:
            for c in cases:
                r = case(c, run_no, state)
                r.pop("output", None)
                results[c].append(r)
                print(f"run {run_no + 1}: {c}: {r['wall']:.1f}s wall, {r['user']:.1f}s user, {r['sys']:.1f}s sys",
                      file=sys.stderr, flush=True)
        finally:
            if "distonet" in state:
                state["distonet"].settle()
                shutil.rmtree(state["distonet"].tmp, ignore_errors=True)
    text = report(results, a.runs)
    a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
