"""Reproducible images: the build's epoch from the archive, and the ext4 inode times clamped to it."""

import hashlib
import os
import subprocess

from distonet.host.apt import _in_release_copy, archive_epoch
from distonet.reproducible import clamp_ext4, ext4_clamp_script, mkfs_env, used_inodes
from distonet.host.run import run

EPOCH = 1_700_000_000


def test_the_epoch_is_the_newest_inrelease_date(tmp_path):
    sources = [("http://mirror.invalid/debian", "trixie"), ("http://mirror.invalid/debian", "trixie-updates")]
    for (mirror, suite), date in zip(sources, ["Sat, 29 Nov 2026 08:12:01 UTC", "Sun, 30 Nov 2026 02:00:00 UTC"]):
        f = _in_release_copy(mirror, suite, tmp_path)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"-----BEGIN PGP SIGNED MESSAGE-----\n\nOrigin: Debian\nDate: {date}\nSuite: {suite}\n")
    assert archive_epoch(sources, tmp_path) == 1796004000
    assert archive_epoch([("http://other.invalid", "x")], tmp_path) == 0     # unknown: no clamping


def test_the_script_dates_every_inode_and_clamps_only_newer_mtimes(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/new").write_text("x")
    (tmp_path / "old").write_text("y")
    os.utime(tmp_path / "old", (EPOCH - 10, EPOCH - 10))
    (tmp_path / 'we"ird').write_text("z")
    script, skipped = ext4_clamp_script(tmp_path, EPOCH, [2, 11, 12])
    lines = script.splitlines()
    for ino in (2, 11, 12):
        assert f"sif <{ino}> ctime @{EPOCH}" in lines and f"sif <{ino}> atime @{EPOCH}" in lines
    assert f'sif "/d/new" mtime @{EPOCH}' in lines and f'sif "/old" mtime @{EPOCH}' not in lines
    assert skipped == 1


def test_the_inodes_in_use_come_from_dumpe2fs(tmp_path):
    said = ("Inode count:              32\nFirst inode:              11\nInodes per group:         16\n"
            "Group 0: (Blocks 0-8191) csum 0x1\n  Free blocks: 9-10\n  Free inodes: 14-16\n"
            "Group 1: (Blocks 8192-16383) csum 0x2 [INODE_UNINIT]\n  Free inodes: 17-30, 32\n")
    assert used_inodes(said) == [2, 11, 12, 13, 31]


def tree_made_at(tree, when):
    """A small tree whose files were made "now", each time another now."""
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("node\n")
    for path in (tree / "etc/hostname", tree / "etc"):
        os.utime(path, (when, when))
    return tree


def image_of(src, image, work):
    uuid = "11111111-2222-3333-4444-555555555555"
    run(["mkfs.ext4", "-q", "-F", "-U", uuid, "-E", f"root_owner=0:0,hash_seed={uuid}", "-d", str(src),
         str(image), "8M"], capture=True, env=mkfs_env(EPOCH))
    clamp_ext4(image, src, EPOCH, work, run)
    return hashlib.sha256(image.read_bytes()).hexdigest()


def test_two_images_of_trees_made_at_different_times_are_identical(tmp_path):
    digests = []
    for n in (1, 2):
        src = tree_made_at(tmp_path / f"src{n}", EPOCH + n * 1000)
        digests.append(image_of(src, tmp_path / f"{n}.img", tmp_path))
    assert digests[0] == digests[1]
    fsck = subprocess.run(["e2fsck", "-fn", str(tmp_path / "1.img")], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout


def test_an_iso_made_twice_at_different_times_is_identical(tmp_path, monkeypatch):
    import time
    from distonet.outputs.iso import ISOLINUX, pycdlib_pinned, write_iso
    files = {"/isolinux/isolinux.bin": ISOLINUX.read_bytes(), "/efi/efiboot.img": b"\0" * 2048,
             "/live/readme.txt": b"hello\n"}
    digests = []
    for n in (1, 2):
        monkeypatch.setattr(time, "time", lambda n=n: EPOCH + 5000 * n)   # the host's clock moves on
        with pycdlib_pinned(EPOCH, "recipe-uuid"):
            write_iso(tmp_path / f"{n}.iso", "TEST", files)
        digests.append(hashlib.sha256((tmp_path / f"{n}.iso").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_the_vmdk_content_id_comes_from_the_recipe(tmp_path):
    from distonet.outputs.ova import set_vmdk_cid, vmdk_argv
    raw = tmp_path / "d.raw"
    raw.write_bytes(b"boot" + b"\0" * (1 << 20))
    digests = []
    for n in range(1, 7):            # qemu's CIDs are of varying length: several tries meet one
        vmdk = tmp_path / f"{n}" / "disk1.vmdk"
        vmdk.parent.mkdir()
        run(vmdk_argv(raw, vmdk))
        set_vmdk_cid(vmdk, "0badc0de")
        digests.append(hashlib.sha256(vmdk.read_bytes()).hexdigest())
    assert len(set(digests)) == 1 and b"\nCID=0badc0de\n" in vmdk.read_bytes()[:2048]
    info = subprocess.run(["qemu-img", "check", str(vmdk)], capture_output=True, text=True)
    assert info.returncode == 0, info.stdout + info.stderr


def test_the_nfsroot_tarball_of_a_tree_made_twice_is_identical(tmp_path):
    from distonet.outputs.nfsroot import tar_argv
    digests = []
    for n in (1, 2):
        tree = tree_made_at(tmp_path / f"tree{n}", EPOCH + n * 1000)
        os.utime(tree, (EPOCH - 5, EPOCH - 5))
        run(tar_argv(tree, tmp_path / f"{n}.tar.zst", EPOCH))
        digests.append(hashlib.sha256((tmp_path / f"{n}.tar.zst").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
