import struct

import pytest

from distonet import grub
from distonet.errors import BuildError
from distonet.layout import BIOS_BOOT, ESP, MIB, SECTOR, disk_layout, rootfs_size, round_up


def test_round_up():
    assert round_up(0, 4) == 0 and round_up(1, 4) == 4 and round_up(8, 4) == 8


@pytest.mark.parametrize("extent", [1, 4, 32])
@pytest.mark.parametrize("used", [0, 1, 700 * MIB + 3])
def test_rootfs_size_is_whole_extents_with_the_free_space(extent, used):
    size = rootfs_size(used, 10000, 256, extent)
    assert size % (extent * MIB) == 0
    assert size >= used + 256 * MIB


def test_disk_layout_is_aligned_and_fits():
    root = 700 * MIB
    layout = disk_layout(root, esp_mib=32)
    bios, esp, rootp = layout.partitions
    assert (bios.type, esp.type) == (BIOS_BOOT, ESP)
    for p in layout.partitions:
        assert p.offset % MIB == 0
    assert bios.start == 2048 and esp.start == bios.start + bios.size and rootp.start == esp.start + esp.size
    assert rootp.bytes == root and esp.bytes == 32 * MIB
    assert layout.total_bytes >= rootp.offset + rootp.bytes + 33 * SECTOR  # backup GPT fits
    assert layout.total_bytes % MIB == 0


def test_sfdisk_script():
    script = disk_layout(8 * MIB).sfdisk_script("11111111-2222-3333-4444-555555555555", {"root": "abc"})
    assert script.startswith("label: gpt\nlabel-id: 11111111-2222-3333-4444-555555555555\n")
    assert 'start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="bios"' in script
    assert "uuid=abc" in script


def test_patch_bios_boot_points_mbr_and_blocklist_at_core():
    mbr = bytes(range(256)) * 2
    boot_img = b"\xeb" + b"\x11" * 511
    core = b"\x22" * (3 * SECTOR + 7)
    new_mbr, new_core = grub.patch_bios_boot(mbr, boot_img, core, core_lba=2048, room_sectors=2048)
    assert new_mbr[:2] == boot_img[:2]
    assert new_mbr[grub.NT_MAGIC:] == mbr[grub.NT_MAGIC:]  # partition table and signature kept
    assert struct.unpack_from("<Q", new_mbr, grub.KERNEL_SECTOR)[0] == 2048
    assert new_mbr[grub.DRIVE_CHECK:grub.DRIVE_CHECK + 2] == b"\x90\x90"
    assert len(new_core) == 4 * SECTOR
    start, length, seg = struct.unpack_from("<QHH", new_core, SECTOR - 12)
    assert (start, length, seg) == (2049, 3, 0x820)


def test_patch_bios_boot_refuses_a_core_too_big():
    with pytest.raises(BuildError, match="BIOS boot partition"):
        grub.patch_bios_boot(bytes(512), bytes(512), bytes(5 * SECTOR), 2048, 4)


def test_grub_cfg_has_serial_console_and_cmdline():
    args = grub.kernel_cmdline("uuid-1", ["quiet"], "ttyS0,115200")
    cfg = grub.grub_cfg("t", "6.12.1-amd64", "uuid-1", args, "ttyS0,115200")
    assert "serial --unit=0 --speed=115200" in cfg
    assert "linux /boot/vmlinuz-6.12.1-amd64 root=UUID=uuid-1 ro console=tty0 console=ttyS0,115200 quiet" in cfg
    assert "initrd /boot/initrd.img-6.12.1-amd64" in cfg
    assert "serial" not in grub.grub_cfg("t", "v", "u", grub.kernel_cmdline("u", [], None), None)
    assert grub.kernel_cmdline("u", [], None) == ["root=UUID=u", "ro"]
