#!/bin/sh
# distonet set-up and entry point: installs what the host needs (idempotent), then
#   ./setup.sh build [doit args]   builds the default recipe (or the args given)
#   ./setup.sh test  [pytest args] runs the whole test suite
#   ./setup.sh       set-up only
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

host_packages="mmdebstrap debootstrap qemu-system-x86 qemu-utils ovmf grub-pc-bin grub-efi-amd64-bin
grub-common mtools dosfstools fdisk e2fsprogs eatmydata arch-test zstd python3-venv ca-certificates util-linux passwd
git openssh-client gnupg dpkg-dev ipxe-qemu pxelinux syslinux-common nfs-ganesha nfs-ganesha-vfs rpcbind iproute2 tar
libvirt-clients libxml2-utils squashfs-tools tgt cpio lsof virt-v2v libxenmisc4.17 isolinux
openssh-server rsync docker-registry chromium fonts-dejavu-core"
# libxenmisc: Xen's xl config parser (libxlutil), no hypervisor; virt-v2v: an OVA reader;
# chromium: renders the build report in the tests
# Servers the tests start themselves (netboot's in a private namespace, sshd and an OCI registry
# on 127.0.0.1): when set-up installs them, they are not left running on the host.
host_services="nfs-ganesha tgt ssh docker-registry"

missing=""
for p in $host_packages; do
    dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing host packages:$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
    if [ -d /run/systemd/system ]; then
        for s in $host_services; do
            case " $missing " in *" $s "*) systemctl disable --now "$s" >/dev/null 2>&1 || true ;; esac
        done
    fi
fi

stamp=.venv/.distonet-installed
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch "$stamp"
fi
# Bytecode written once: where PYTHONDONTWRITEBYTECODE is set, every doit run would otherwise
# compile the package again (a tenth of a no-op build). Only changed modules are recompiled.
.venv/bin/python -m compileall -q distonet dodo.py >/dev/null
# `distonet` and `doit` usable directly: link them onto PATH unless something else owns the name.
# A link into another checkout is replaced, with a note: the last set-up run wins.
for tool in distonet doit; do
    link=/usr/local/bin/$tool
    if [ ! -e "$link" ] || [ -L "$link" ]; then
        old=$(readlink "$link" 2>/dev/null || true)
        if [ -n "$old" ] && [ "$old" != "$here/.venv/bin/$tool" ]; then
            echo "setup: $link pointed at $old; now at this checkout"
        fi
        ln -sfn "$here/.venv/bin/$tool" "$link"
    fi
done

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    build) [ $# -gt 0 ] || set -- minimal; exec .venv/bin/distonet build "$@" ;;
    test)  exec .venv/bin/python -m pytest -ra "$@" ;;
    "")    echo "setup: done (distonet --help; doit build recipe=minimal)" ;;
    *)     echo "usage: $0 [build|test] [args]" >&2; exit 2 ;;
esac
