"""Sizes and partition layouts: pure arithmetic, unit-tested."""

from __future__ import annotations

from dataclasses import dataclass

SECTOR = 512
MIB = 1 << 20

BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # discoverable partitions spec


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def rootfs_size(used_bytes: int, inodes: int, free_mib: int, extent_mib: int) -> int:
    """Bytes for an ext4 image that holds `used_bytes` in `inodes` files with `free_mib` to spare,
    rounded up to a whole number of LVM extents (so an LV of exactly this size holds it)."""
    metadata = inodes * 256 + used_bytes // 20 + 48 * MIB  # inode tables, bitmaps, journal
    return round_up(used_bytes + metadata + free_mib * MIB, extent_mib * MIB)


@dataclass(frozen=True)
class Partition:
    name: str
    start: int   # sectors
    size: int    # sectors
    type: str

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def bytes(self) -> int:
        return self.size * SECTOR


@dataclass(frozen=True)
class DiskLayout:
    partitions: tuple[Partition, ...]
    total_bytes: int

    def part(self, name: str) -> Partition:
        return next(p for p in self.partitions if p.name == name)

    def sfdisk_script(self, disk_guid: str, part_guids: dict[str, str]) -> str:
        lines = ["label: gpt", f"label-id: {disk_guid}", "unit: sectors", "first-lba: 2048", ""]
        for p in self.partitions:
            uuid = f", uuid={part_guids[p.name]}" if p.name in part_guids else ""
            lines.append(f'start={p.start}, size={p.size}, type={p.type}{uuid}, name="{p.name}"')
        return "\n".join(lines) + "\n"


def disk_layout(root_bytes: int, esp_mib: int = 32) -> DiskLayout:
    """GPT: 1 MiB BIOS boot (GRUB's core.img), the ESP, then the root filesystem, all 1 MiB
    aligned; 1 MiB at the end holds the backup GPT."""
    align = MIB // SECTOR
    bios = Partition("bios", align, align, BIOS_BOOT)
    esp = Partition("esp", bios.start + bios.size, esp_mib * align, ESP)
    root = Partition("root", esp.start + esp.size, round_up(root_bytes, MIB) // SECTOR, LINUX_ROOT_X86_64)
    total = (root.start + root.size + align) * SECTOR
    return DiskLayout((bios, esp, root), total)
