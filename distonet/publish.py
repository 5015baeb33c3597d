"""Publish a finished, boot-tested build to an artifact share: a local path (or a mounted NFS or
SMB share), or a directory on another host reached by rsync over SSH.

Layout on the share:

    <share>/<recipe>/<build-id>/    the artifacts, manifest.json, SHA256SUMS (+ SHA256SUMS.asc)
    <share>/<recipe>/latest         a symbolic link to the newest published build

A build is copied into `.partial-<build-id>/` first, checked against its manifest's digests as
read back from the share, signed when a key is given, and only then renamed into place; then
`latest` is switched by renaming a new link over the old one. A reader therefore sees a whole
build or none, and `latest` never names a build that is not complete. Running an interrupted
publish again resumes: files already in the partial copy with the right digest are kept.
Retention keeps the newest N builds and never the one `latest` names; a removed build is renamed
away first, so it never shows half-deleted. One publish per recipe at a time (a lock file).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import faults, log
from .errors import BuildError, DistonetError
from .fsutil import fsync_dir, sha256_file, write_atomic
from .host.run import Runner, run
from .manifest import MANIFEST, SUMS, Manifest

LATEST = "latest"
PARTIAL = ".partial-"
TRASH = ".trash-"
SIGNATURE = SUMS + ".asc"


@dataclass
class Published:
    recipe: str
    build_id: str
    where: str
    copied: int = 0             # bytes copied this run
    kept: int = 0               # bytes a resumed run found already there
    removed: list[str] = field(default_factory=list)   # builds retention removed
    already: bool = False       # the build was on the share already


def publishable(m: Manifest, force: bool = False) -> None:
    """A build is published once its boot tests passed (all of them), unless forced."""
    if force:
        return
    if not m.boots:
        raise DistonetError(f"{m.recipe}: build {m.build_id} was never boot-tested",
                            hint=f"run `doit boot recipe={m.recipe}` first, or publish with --force")
    failed = [f"{b.artifact}/{b.firmware}" for b in m.boots if not b.reached]
    if failed:
        raise DistonetError(f"{m.recipe}: build {m.build_id} failed its boot test ({', '.join(failed)})",
                            hint="fix the build and boot it again, or publish with --force")


def files_of(m: Manifest) -> list[str]:
    """What a published build holds, the manifest last (the commit point of the copy)."""
    return [a.path for a in m.artifacts] + [SUMS, MANIFEST]


@contextmanager
def _lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"publish: waiting for another publish to {directory}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def verify(build: Path, m: Manifest) -> None:
    """Every artifact on the share has the digest its manifest says (read back, not trusted)."""
    for art in m.artifacts:
        f = build / art.path
        if not f.is_file() or f.stat().st_size != art.size or sha256_file(f) != art.sha256:
            raise BuildError(f"{f}: does not match the manifest after the copy",
                             hint="the share changed it, or the build changed during the publish; run it again")


def sign(build: Path, key: str, runner: Runner = run, gnupg_home: str | None = None) -> None:
    env = {**os.environ, **({"GNUPGHOME": gnupg_home} if gnupg_home else {})}
    runner(["gpg", "--batch", "--yes", "--local-user", key, "--armor", "--detach-sign",
            "--output", str(build / SIGNATURE), str(build / SUMS)], capture=True, env=env)


class LocalShare:
    """A path: a local directory or a mounted network share."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def builds(self, recipe: str) -> list[str]:
        d = self.root / recipe
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and not p.is_symlink()) if d.is_dir() else []

    def latest(self, recipe: str) -> str | None:
        link = self.root / recipe / LATEST
        return os.readlink(link) if link.is_symlink() else None

    def manifests(self, recipe: str) -> list[Manifest]:
        out = []
        for name in self.builds(recipe):
            try:
                out.append(Manifest.load(self.root / recipe / name))
            except DistonetError:
                continue                          # not a build distonet reads: not in the index
        return out

    def write_index(self, recipe: str) -> None:
        from .buildreport import INDEX, render_index
        write_atomic(self.root / recipe / INDEX, render_index(recipe, self.manifests(recipe), self.latest(recipe)))

    def publish(self, out_dir: Path, m: Manifest, *, keep: int = 5, sign_key: str | None = None,
                gnupg_home: str | None = None, runner: Runner = run, extras: dict[str, Path] | None = None) -> Published:
        top = self.root / m.recipe
        result = Published(m.recipe, m.build_id, str(top / m.build_id))
        with _lock(top):
            final = top / m.build_id
            if final.is_dir():
                verify(final, Manifest.load(final))
                result.already = True
            else:
                partial = top / f"{PARTIAL}{m.build_id}"
                partial.mkdir(exist_ok=True)
                for rel in files_of(m):
                    self._copy(out_dir / rel, partial / rel, m, rel, result, runner)
                    faults.point(f"publish:{m.recipe}:copied")
                for rel, src in (extras or {}).items():     # the report: made for this publish
                    shutil.copyfile(src, partial / rel)
                verify(partial, m)
                if sign_key:
                    sign(partial, sign_key, runner, gnupg_home)
                _fsync_tree(partial)
                faults.point(f"publish:{m.recipe}:rename")
                os.rename(partial, final)
                fsync_dir(top)
                faults.point(f"publish:{m.recipe}:committed")
            self._point_latest(top, m.build_id)
            result.removed = self._retain(top, keep)
        return result

    def _copy(self, src: Path, dest: Path, m: Manifest, rel: str, result: Published, runner: Runner) -> None:
        art = next((a for a in m.artifacts if a.path == rel), None)
        if art and dest.is_file() and dest.stat().st_size == art.size and sha256_file(dest) == art.sha256:
            result.kept += art.size          # a resumed publish: this one arrived whole last time
            return
        if not src.is_file():
            raise BuildError(f"{src}: missing from the build", hint="rebuild the recipe")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        # sparse images stay sparse; a copy-on-write file system shares the blocks
        runner(["cp", "--sparse=always", "--reflink=auto", "--preserve=mode,timestamps", str(src), str(tmp)])
        os.replace(tmp, dest)
        result.copied += src.stat().st_size

    @staticmethod
    def _point_latest(top: Path, build_id: str) -> None:
        if (top / LATEST).is_symlink() and os.readlink(top / LATEST) == build_id:
            return
        tmp = top / f".{LATEST}.new"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(build_id, tmp)
        os.replace(tmp, top / LATEST)     # rename(2): readers see the old link or the new one
        fsync_dir(top)

    def _retain(self, top: Path, keep: int) -> list[str]:
        latest = os.readlink(top / LATEST) if (top / LATEST).is_symlink() else None
        dated = []
        for name in self.builds(top.name):
            try:
                dated.append((Manifest.load(top / name).built_at, name))
            except DistonetError:
                dated.append(("", name))          # unreadable: oldest, so it goes first
        dated.sort(reverse=True)
        keep_names = {n for _, n in dated[:max(keep, 1)]} | ({latest} if latest else set())
        removed = []
        for _, name in dated:
            if name not in keep_names:
                trash = top / f"{TRASH}{name}"
                os.rename(top / name, trash)      # gone from view at once, then deleted
                shutil.rmtree(trash)
                removed.append(name)
        for stale in top.glob(f"{TRASH}*"):       # an earlier removal that was interrupted
            shutil.rmtree(stale, ignore_errors=True)
        return removed


def _fsync_tree(d: Path) -> None:
    for p in d.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for p in [d, *(q for q in d.rglob("*") if q.is_dir())]:
        fsync_dir(p)


# Run on the share's host under the recipe's lock, once the files are there: check them against
# SHA256SUMS, move the build into place, switch latest, apply retention. POSIX sh, coreutils
# (sha256sum, mv -T), util-linux's flock.
REMOTE_FINISH = r"""
set -eu
top="$1"; id="$2"; keep="$3"
cd "$top"
exec 9>>.lock
flock 9
if [ -d "$id" ]; then
    (cd "$id" && sha256sum --quiet --strict -c SHA256SUMS)
    rm -rf ".partial-$id"
    echo "distonet: already there"
else
    (cd ".partial-$id" && sha256sum --quiet --strict -c SHA256SUMS) || {
        echo "distonet: the copy on the share does not match its SHA256SUMS" >&2; exit 3; }
    sync
    mv -T ".partial-$id" "$id"
fi
ln -sfn "$id" .latest.new
mv -T .latest.new latest
latest="$(readlink latest)"
for d in */; do
    d="${d%/}"
    [ -L "$d" ] && continue
    t="$(sed -n 's/^  "built_at": "\(.*\)",$/\1/p' "$d/manifest.json" 2>/dev/null || true)"
    echo "${t:-0} $d"
done | sort -r | awk -v keep="$keep" 'NR > keep { print $2 }' | while read -r old; do
    [ "$old" = "$latest" ] && continue
    mv -T "$old" ".trash-$old" && rm -rf ".trash-$old" && echo "distonet: removed $old"
done
rm -rf .trash-*
"""


class RsyncShare:
    """A directory on another host, reached by rsync over SSH: `ssh://[user@]host[:port]/path`
    or `[user@]host:/path`. The same layout and guarantees as a local share: rsync fills
    `.partial-<build-id>/` (and resumes it), then one ssh command checks and finishes it."""

    def __init__(self, host: str, path: str, port: int | None = None, ssh_options: tuple[str, ...] = ()):
        self.host, self.path, self.port, self.ssh_options = host, path.rstrip("/") or "/", port, tuple(ssh_options)

    def __str__(self) -> str:
        return f"{self.host}:{self.path}" if self.port is None else f"ssh://{self.host}:{self.port}{self.path}"

    def ssh(self) -> list[str]:
        return ["ssh", *(["-p", str(self.port)] if self.port else []), *self.ssh_options]

    def manifests(self, recipe: str, runner: Runner = run) -> list[Manifest]:
        """Every build's manifest on the share, read in one ssh command."""
        import json
        import shlex
        script = ('cd "$1" 2>/dev/null || exit 0; for f in */manifest.json; do [ -f "$f" ] || continue; '
                  '[ -L "${f%/manifest.json}" ] && continue; cat "$f"; printf "\\036"; done')
        said = runner([*self.ssh(), self.host, "sh", "-c", shlex.quote(script), "distonet-list",
                       shlex.quote(f"{self.path}/{recipe}")], capture=True)
        out = []
        for chunk in (said.stdout or "").split("\x1e"):
            try:
                out.append(Manifest.from_dict(json.loads(chunk)))
            except (ValueError, DistonetError, TypeError):
                continue
        return out

    def write_index(self, recipe: str, runner: Runner = run) -> None:
        import shlex
        import tempfile
        from .buildreport import INDEX, render_index
        manifests = self.manifests(recipe, runner)
        said = runner([*self.ssh(), self.host, "readlink", shlex.quote(f"{self.path}/{recipe}/{LATEST}")],
                      check=False, capture=True)
        with tempfile.TemporaryDirectory(prefix="distonet-index-") as tmp:
            page = Path(tmp) / INDEX
            page.write_text(render_index(recipe, manifests, (said.stdout or "").strip() or None))
            top = f"{self.path}/{recipe}"
            runner(["rsync", "--archive", "-e", shlex.join(self.ssh()), str(page), f"{self.host}:{top}/.{INDEX}.new"])
            runner([*self.ssh(), self.host, "mv", "-f", shlex.quote(f"{top}/.{INDEX}.new"), shlex.quote(f"{top}/{INDEX}")])

    def publish(self, out_dir: Path, m: Manifest, *, keep: int = 5, sign_key: str | None = None,
                gnupg_home: str | None = None, runner: Runner = run, extras: dict[str, Path] | None = None) -> Published:
        import re
        import shlex
        import tempfile
        top = f"{self.path}/{m.recipe}"
        result = Published(m.recipe, m.build_id, f"{self}/{m.recipe}/{m.build_id}")
        dest = f"{self.host}:{top}/{PARTIAL}{m.build_id}/"
        rsync = ["rsync", "--archive", "--sparse", "--partial", "--mkpath", "-e", shlex.join(self.ssh())]
        there = runner([*self.ssh(), self.host, "test", "-f", shlex.quote(f"{top}/{m.build_id}/{MANIFEST}")],
                       check=False, capture=True)
        with tempfile.TemporaryDirectory(prefix="distonet-publish-") as tmp:
            listing = Path(tmp) / "files"
            listing.write_text("".join(f"{rel}\n" for rel in files_of(m)))
            if there.returncode != 0:            # else only checked and made latest below
                said = runner([*rsync, "--stats", f"--files-from={listing}", f"{out_dir}/", dest], capture=True)
                sent = re.search(r"Total bytes sent: ([\d,.]+)", said.stdout or "")
                result.copied = int(re.sub(r"[,.]", "", sent.group(1))) if sent else 0
            if sign_key and there.returncode != 0:
                (Path(tmp) / "sig").mkdir()
                shutil.copyfile(out_dir / SUMS, Path(tmp) / "sig" / SUMS)
                sign(Path(tmp) / "sig", sign_key, runner, gnupg_home)
                runner([*rsync, str(Path(tmp) / "sig" / SIGNATURE), dest])
            if extras and there.returncode != 0:
                runner([*rsync, *(str(p) for p in extras.values()), dest])
            faults.point(f"publish:{m.recipe}:copied")
        said = runner([*self.ssh(), self.host, "sh", "-c", shlex.quote(REMOTE_FINISH), "distonet-publish",
                       shlex.quote(top), m.build_id, str(keep)], capture=True)
        out = said.stdout if said is not None else ""
        result.already = "distonet: already there" in out
        faults.point(f"publish:{m.recipe}:committed")
        result.removed = [line.split()[-1] for line in out.splitlines() if line.startswith("distonet: removed")]
        return result


def share_for(spec: str, ssh_options: tuple[str, ...] = ()):
    """A share from its spec: a path (or file://path), a directory over SSH
    (ssh://[user@]host[:port]/path, [user@]host:/path), or an OCI registry (oci.py)."""
    import re
    from .oci import share_from
    if spec.startswith("file://"):
        spec = spec[len("file://"):]
    if spec.startswith("/"):
        return LocalShare(Path(spec))
    oci = share_from(spec)
    if oci:
        return oci
    url = re.match(r"^ssh://([A-Za-z0-9._@-]+?)(?::(\d+))?(/.*)$", spec)
    if url:
        return RsyncShare(url.group(1), url.group(3), int(url.group(2)) if url.group(2) else None, ssh_options)
    scp = re.match(r"^([A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+):(/.*)$", spec)
    if scp:
        return RsyncShare(f"{scp.group(1) or ''}{scp.group(2)}", scp.group(3), None, ssh_options)
    raise DistonetError(f"share {spec!r}: not a share distonet knows",
                        hint="an absolute path (a local directory or a mounted NFS/SMB share), file:///path, "
                             "ssh://[user@]host[:port]/path or [user@]host:/path (rsync over SSH), "
                             "oci://registry/namespace (an OCI registry)")


def publish(out_dir: Path, share: str, *, keep: int = 5, force: bool = False, sign_key: str | None = None,
            gnupg_home: str | None = None, ssh_options: tuple[str, ...] = (), runner: Runner = run,
            stages_dir: Path | None = None) -> Published:
    """Publish the build in `out_dir` with its report (buildreport.py): the package diff against
    the share's previous build, security fixes read from the image's changelogs in `stages_dir`
    (the local store) where it still holds the build's stages."""
    import tempfile
    from . import buildreport
    m = Manifest.load(out_dir)
    publishable(m, force)
    target = share_for(share, ssh_options)
    with log.step(f"publish {m.recipe} build {m.build_id} to {target}"), \
            tempfile.TemporaryDirectory(prefix="distonet-report-") as tmp:
        before = buildreport.previous(target.manifests(m.recipe), m)
        diff = buildreport.package_diff(m, before, buildreport.store_changelogs(stages_dir, m))
        page = Path(tmp) / buildreport.REPORT
        page.write_text(buildreport.render_report(m, diff, signed=bool(sign_key)))
        try:
            result = target.publish(out_dir, m, keep=keep, sign_key=sign_key, gnupg_home=gnupg_home,
                                    runner=runner, extras={buildreport.REPORT: page})
        except OSError as exc:   # the share went away (requests' errors are OSErrors too)
            raise BuildError(f"publish {m.recipe} to {target}: {exc}",
                             hint="check that the share is reachable, then publish again: what arrived "
                                  "whole is kept, and nothing counts as published until all of it has") from None
        if hasattr(target, "write_index"):
            target.write_index(m.recipe)
    log.info(f"published {m.recipe} {m.build_id}: {result.where}"
             + (" (already there)" if result.already else f", {result.copied >> 20} MiB sent")
             + (f", {result.kept >> 20} MiB kept from an interrupted run" if result.kept else "")
             + (f"; removed {', '.join(result.removed)}" if result.removed else ""))
    return result


@dataclass
class Settings:
    share: str
    keep: int = 5
    sign_key: str | None = None
    gnupg_home: str | None = None
    ssh_options: tuple[str, ...] = ()


def settings(site_values: dict, share: str | None = None, keep: int | None = None,
             sign_key: str | None = None, where: str = "the site file") -> Settings:
    """The command line's share=, keep and key, else the site file's `publish:` mapping
    ({share, keep, sign_key, gnupg_home, ssh_options})."""
    conf = site_values.get("publish") or {}
    if not isinstance(conf, dict):
        raise DistonetError(f"{where}: publish: a mapping of share, keep, sign_key, gnupg_home")
    unknown = set(conf) - {"share", "keep", "sign_key", "gnupg_home", "ssh_options"}
    if unknown:
        raise DistonetError(f"{where}: publish.{sorted(unknown)[0]}: unknown key",
                            hint="publish: takes share, keep, sign_key, gnupg_home and ssh_options")
    share = share or conf.get("share") or os.environ.get("DISTONET_SHARE")
    if not share:
        raise DistonetError("publish: no share given",
                            hint="share=/path on the command line (--share), or publish: {share: …} in the site file")
    keep = keep if keep is not None else conf.get("keep", 5)
    if not isinstance(keep, int) or keep < 1:
        raise DistonetError(f"{where}: publish.keep: {keep!r} is not a number of builds (1 or more)")
    opts = conf.get("ssh_options") or []
    if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
        raise DistonetError(f"{where}: publish.ssh_options: a list of ssh arguments, e.g. [-i, /root/.ssh/builds]")
    return Settings(share, keep, sign_key or conf.get("sign_key"), conf.get("gnupg_home"), tuple(opts))


def fetch(share: str, recipe: str, build: str = LATEST, dest: Path = Path("."), ssh_options: tuple[str, ...] = ()) -> Path:
    """A published build (`latest` or a build id) into `dest/<recipe>-<build-id>/`, checked
    against its digests; from a file share or an OCI registry."""
    from . import oci
    target = share_for(share, ssh_options)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if isinstance(target, oci.OciShare):
        got = oci.fetch(target, recipe, build, dest)
    elif isinstance(target, LocalShare):
        src = target.root / recipe / build
        if not (src / MANIFEST).is_file():
            raise DistonetError(f"{src}: no published build there",
                                hint=f"builds on the share: {', '.join(target.builds(recipe)) or 'none'}")
        m = Manifest.load(src)
        got = dest / f"{recipe}-{m.build_id}"
        if not got.is_dir():
            partial = dest / f".{recipe}-{m.build_id}.partial"
            for rel in files_of(m) + ([SIGNATURE] if (src / SIGNATURE).is_file() else []):
                (partial / rel).parent.mkdir(parents=True, exist_ok=True)
                run(["cp", "--sparse=always", "--reflink=auto", str(src / rel), str(partial / rel)])
            verify(partial, m)
            os.rename(partial, got)
    else:
        raise DistonetError(f"fetch from {target}: only file shares and OCI registries",
                            hint="over SSH, rsync the build's folder: it is self-checking (sha256sum -c SHA256SUMS)")
    log.info(f"fetched {recipe} into {got}")
    return got
