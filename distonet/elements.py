"""diskimage-builder elements: which ones a recipe gets (their dependencies resolved by
diskimage-builder's own code) and what they contain, for the plan and the elements stages.

distonet builds the operating system itself, so the element `distonet-os` (shipped in
distonet/dib_elements) provides `operating-system`, as diskimage-builder requires of one element.
Only the in-chroot phases run (see docs/elements.md); phases that make the OS or the disk are
refused at plan time, because an element that needs them would be silently half-applied.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import log
from .digest import digest
from .errors import RecipeError
from .fsutil import write_atomic

OS_ELEMENT = "distonet-os"
SHIPPED = Path(__file__).parent / "dib_elements"
CHROOT_PHASES = ("pre-install", "install", "post-install")
FINAL_PHASES = ("finalise",)
# Work diskimage-builder does outside the chroot that distonet does itself: package-installs'
# squash and pkg-map's copy run on the build host (elements.stage); the rest is not done.
HANDLED_OUTSIDE = {"package-installs", "pkg-map"}
REFUSED = ("root.d", "block-device.d", "pre-finalise.d")   # OS and disk making: distonet's job
SKIPPED = ("extra-data.d", "cleanup.d")                     # host-side steps: noted, not run
# Every phase directory diskimage-builder knows: a script in any other never runs (a typo).
KNOWN_PHASES = ("root.d", "extra-data.d", "pre-install.d", "install.d", "post-install.d", "post-root.d",
                "block-device.d", "pre-finalise.d", "finalise.d", "cleanup.d", "environment.d")


def dib_root() -> Path:
    import diskimage_builder
    return Path(diskimage_builder.__file__).parent


def search_path(local_dirs: tuple[Path, ...]) -> list[Path]:
    """A site's elements first (they override), then distonet's, then diskimage-builder's."""
    return [d for d in (*local_dirs, SHIPPED, dib_root() / "elements") if d.is_dir()]


def known(dirs: list[Path]) -> list[str]:
    return sorted({p.name for d in dirs for p in d.iterdir() if p.is_dir() and not p.name.startswith("_")})


def resolve(names: tuple[str, ...], local_dirs: tuple[Path, ...], source: str) -> list[tuple[str, Path]]:
    """(name, directory) of the named elements and all they depend on, in diskimage-builder's
    order, with distonet-os standing for the operating system."""
    from diskimage_builder import element_dependencies as ed
    dirs = search_path(local_dirs)
    names_known = known(dirs)
    for name in names:
        if name not in names_known:
            close = difflib.get_close_matches(name, names_known, n=1)
            raise RecipeError(f"{source}: dib.elements: no element '{name}'"
                              + (f" (did you mean '{close[0]}'?)" if close else "")
                              + f" in {', '.join(str(d) for d in dirs[:-1])} or diskimage-builder's own"
                              "; `distonet elements` lists them")
    try:
        found = ed.get_elements([*names, OS_ELEMENT], ":".join(str(d) for d in dirs))
    except ed.AlreadyProvidedException as exc:
        raise RecipeError(f"{source}: dib.elements: {exc or 'an element provides the operating system'}; "
                          "distonet builds the operating system itself (name no OS element)") from None
    except ed.MissingElementException as exc:  # a dependency of a named element
        raise RecipeError(f"{source}: dib.elements: {exc}") from None
    out = [(name, Path(path)) for name, path in found]
    for name, path in out:
        # Elements keep data in .d directories of their own (init.d, udev.d); one named almost
        # like a phase is a typo whose scripts would never run.
        for d in sorted(p for p in path.iterdir() if p.is_dir() and p.name.endswith(".d")):
            close = difflib.get_close_matches(d.name, KNOWN_PHASES, n=1, cutoff=0.8)
            if d.name not in KNOWN_PHASES and close:
                raise RecipeError(f"{source}: dib.elements: element '{name}' ({path}) has {d.name}, which is no "
                                  f"diskimage-builder phase: its scripts would never run (did you mean {close[0]}?)",
                                  hint="see docs/elements.md for the phases distonet runs")
        refused = [p for p in REFUSED if _scripts(path / p)]
        if refused:
            raise RecipeError(f"{source}: dib.elements: element '{name}' ({path}) has {', '.join(refused)} "
                              "scripts, which make the OS or the disk; distonet does that itself",
                              hint="see docs/elements.md for the phases distonet runs")
        skipped = [p for p in SKIPPED if _scripts(path / p)]
        if skipped and name not in HANDLED_OUTSIDE:
            log.detail(f"element {name}: {', '.join(skipped)} not run (host-side; docs/elements.md)")
    return sorted(out)


def _scripts(d: Path) -> list[Path]:
    return [f for f in d.iterdir() if f.is_file()] if d.is_dir() else []


def dir_digest(root: Path) -> str:
    """Content of an element directory: names, the exec bit, symlink targets, bytes."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", "tests"))
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if p.suffix == ".pyc":
                continue
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                h.update(f"L {rel} {os.readlink(p)}\n".encode())
            else:
                h.update(f"F {rel} {os.access(p, os.X_OK)} {hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def dib_env(suite: str, arch: str, names: list[str], environment: dict[str, str]) -> dict[str, str]:
    """What diskimage-builder's own OS elements would have exported for a Debian image."""
    return {"DISTRO_NAME": "debian", "DIB_RELEASE": suite, "DIB_INIT_SYSTEM": "systemd",
            "ARCH": arch, "DIB_DEBUG_TRACE": "0", "IMAGE_ELEMENT": " ".join(names),
            "DIB_PYTHON_VERSION": "3", "TMP_HOOKS_PATH": "/tmp/in_target.d", **environment}


def package_installs(found: list[tuple[str, Path]], env: dict[str, str], run=None) -> dict[str, dict[str, list[str]]]:
    """phase → {install: [...], uninstall: [...]}: the elements' package-installs files squashed
    and mapped to Debian names by diskimage-builder's own package-installs-squash and pkg-map,
    run here on the build host so the image needs no Python for them."""
    run = run or subprocess.run
    tools = dib_root() / "elements"
    if not any((p / f).is_file() for _n, p in found for f in ("package-installs.yaml", "package-installs.json")):
        return {}
    host_env = {**os.environ, **env}
    with tempfile.TemporaryDirectory(prefix="distonet-elements-") as tmp:
        # One directory holding exactly the resolved elements: the squash looks names up along a
        # path and would also read an overridden element of the same name.
        view = Path(tmp) / "elements"
        view.mkdir()
        for name, path in found:
            (view / name).symlink_to(path)
        out = Path(tmp) / "package-installs.json"
        run([sys.executable, str(tools / "package-installs/bin/package-installs-squash"),
             f"--elements={' '.join(n for n, _ in found)}", f"--path={view}", str(out)],
            env=host_env, check=True, capture_output=True, text=True)
        squashed = json.loads(out.read_text())
    dirs = dict(found)
    result: dict[str, dict[str, list[str]]] = {}
    for phase_d, actions in squashed.items():
        phase = phase_d.removesuffix(".d")
        for action, pairs in actions.items():
            by_element: dict[str, list[str]] = {}
            for pkg, element in pairs:
                by_element.setdefault(element, []).append(pkg)
            names: list[str] = []
            for element, pkgs in by_element.items():
                pkg_map = dirs[element] / "pkg-map"
                if not pkg_map.is_file():
                    names += pkgs
                    continue
                mapped = run([sys.executable, str(tools / "pkg-map/bin/pkg-map"), "--pkg-map", str(pkg_map),
                              "--distro", env["DISTRO_NAME"], "--release", env["DIB_RELEASE"],
                              "--prefix", "-", "--missing-ok", *pkgs],
                             env=host_env, check=True, capture_output=True, text=True).stdout
                names += [line[1:] for line in mapped.splitlines() if line.startswith("-") and line[1:]]
            if names:
                result.setdefault(phase, {})[action] = sorted(set(names))
    return result


def phases_of(found: list[tuple[str, Path]], packages: dict) -> list[str]:
    """The phases with anything to do: scripts, or packages to install or remove."""
    out = set(packages)
    for _name, path in found:
        out.update(p for p in (*CHROOT_PHASES, *FINAL_PHASES) if _scripts(path / f"{p}.d"))
    return [p for p in (*CHROOT_PHASES, *FINAL_PHASES) if p in out]


def element_facts(names: tuple[str, ...], environment: dict[str, str], suite: str, arch: str,
                  local_dirs: tuple[Path, ...], source: str, cache: Path | None = None) -> dict:
    """Everything the elements stages need, settled at plan time so that it is in their keys.
    The package-installs result is kept in `cache`/elements/ by the elements' content and the
    environment: every doit load plans, and the squash and pkg-map cost about 0.3 s."""
    if not names:
        return {}
    found = resolve(names, local_dirs, source)
    env = dib_env(suite, arch, [n for n, _ in found], dict(environment))
    digests = {n: dir_digest(p) for n, p in found}
    kept = cache / "elements" / f"{digest({'elements': digests, 'env': env})}.json" if cache else None
    if kept is not None and kept.is_file():
        packages = json.loads(kept.read_text())
    else:
        try:
            packages = package_installs(found, env)
        except subprocess.CalledProcessError as exc:
            last = (exc.stderr or "").strip().splitlines()[-1:] or [""]
            raise RecipeError(f"{source}: dib.elements: package-installs of the elements failed: {last[0]}") from None
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(kept, json.dumps(packages))
    for phase, actions in packages.items():
        if phase not in (*CHROOT_PHASES, *FINAL_PHASES):
            raise RecipeError(f"{source}: dib.elements: package-installs names phase '{phase}.d', "
                              "which distonet does not run")
    return {"elements": [{"name": n, "dir": str(p), "digest": digests[n]} for n, p in found],
            "env": env, "packages": packages, "phases": phases_of(found, packages)}
