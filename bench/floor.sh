#!/bin/sh
# The plain-script floor: what any tool must do to make minimal's bootable disk, and nothing
# more. mmdebstrap (the same package set as recipes/minimal.yaml, downloads included), a root
# file system made from the tree (mkfs.ext4 -d), an ESP with GRUB EFI (mtools: no vfat here),
# both written into a GPT disk at their offsets, and the disk converted to qcow2.
#   bench/floor.sh OUTDIR MIRROR [SUITE]
set -eu
out="$1"; mirror="$2"; suite="${3:-trixie}"
mkdir -p "$out"
tree="$out/tree"
mmdebstrap --quiet --variant=minbase --components=main \
    --include=linux-image-amd64,systemd,systemd-sysv,systemd-resolved,udev,dbus,iproute2,login,passwd,less,openssh-server,initramfs-tools \
    --customize-hook='echo floor > "$1/etc/hostname"' \
    "$suite" "$tree" "$mirror"
uuid=$(cat /proc/sys/kernel/random/uuid)
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" > "$tree/etc/fstab"
kernel=$(ls "$tree"/boot/vmlinuz-* | head -n1); kver=${kernel##*/vmlinuz-}
size_mib=$(( $(du -sm "$tree" | cut -f1) * 13 / 10 + 128 ))
mkfs.ext4 -q -F -U "$uuid" -L root -d "$tree" "$out/root.img" "${size_mib}M"
# ESP: GRUB EFI with its configuration embedded, the kernel and initrd read from the root
cat > "$out/grub.cfg" <<CFG
search --no-floppy --fs-uuid --set=root $uuid
linux /boot/vmlinuz-$kver root=UUID=$uuid ro console=ttyS0,115200
initrd /boot/initrd.img-$kver
boot
CFG
grub-mkimage -O x86_64-efi -p /EFI/BOOT -c "$out/grub.cfg" -o "$out/BOOTX64.EFI" \
    part_gpt ext2 linux search search_fs_uuid normal configfile echo gzio
truncate -s 32M "$out/esp.img"
mformat -i "$out/esp.img" ::
mmd -i "$out/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$out/esp.img" "$out/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
# GPT: the ESP at 1 MiB, the root after it
truncate -s $(( 1 + 32 + size_mib + 1 ))M "$out/disk.raw"
sfdisk --quiet "$out/disk.raw" <<PT
label: gpt
start=1MiB, size=32MiB, type=uefi
start=33MiB, size=${size_mib}MiB, type=linux
PT
dd if="$out/esp.img" of="$out/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$out/root.img" of="$out/disk.raw" bs=1M seek=33 conv=notrunc,sparse status=none
qemu-img convert -O qcow2 "$out/disk.raw" "$out/disk.qcow2"
