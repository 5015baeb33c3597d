"""Xen's own parser for xl domain configs: libxlutil (Debian's libxenmisc), called through
ctypes. It is the library `xl` parses with and needs no hypervisor, unlike `xl -N create`,
which opens /dev/xen/privcmd first. Disk specifications go through `xlu_disk_parse`, xl's
own disk grammar."""

from __future__ import annotations

import ctypes
import ctypes.util
import tempfile
from pathlib import Path

from .errors import BuildError


def _libs():
    names = ctypes.util.find_library("xlutil"), ctypes.util.find_library("xenlight")
    if not all(names):
        raise BuildError("Xen's config parser (libxlutil) is not installed",
                         hint="apt install libxenmisc4.17 (or your release's libxenmisc); ./setup.sh does")
    xlu, xl = (ctypes.CDLL(n) for n in names)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    xlu.xlu_cfg_init.restype = ctypes.c_void_p
    xlu.xlu_cfg_init.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    xlu.xlu_cfg_readfile.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    xlu.xlu_cfg_destroy.argtypes = [ctypes.c_void_p]
    xlu.xlu_cfg_get_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
    xlu.xlu_cfg_get_long.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_long), ctypes.c_int]
    xlu.xlu_cfg_get_list.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
                                     ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    xlu.xlu_cfg_get_listitem.restype = ctypes.c_char_p
    xlu.xlu_cfg_get_listitem.argtypes = [ctypes.c_void_p, ctypes.c_int]
    xlu.xlu_disk_parse.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p]
    xl.libxl_device_disk_init.argtypes = [ctypes.c_void_p]
    xl.libxl_device_disk_dispose.argtypes = [ctypes.c_void_p]
    return xlu, xl, libc


def parse(path: Path, strings=(), longs=(), lists=()) -> dict:
    """The values of the named settings as xl reads them; a syntax error, a missing setting or
    a disk xl would refuse raises BuildError with the parser's own words."""
    xlu, xl, libc = _libs()
    with tempfile.NamedTemporaryFile("r") as report:
        fh = libc.fopen(report.name.encode(), b"w")
        cfg = xlu.xlu_cfg_init(fh, str(path).encode())
        try:
            err = xlu.xlu_cfg_readfile(cfg, str(path).encode())
            values: dict = {}
            if not err:
                for name in strings:
                    out = ctypes.c_char_p()
                    if xlu.xlu_cfg_get_string(cfg, name.encode(), ctypes.byref(out), 0) == 0:
                        values[name] = out.value.decode()
                for name in longs:
                    out_l = ctypes.c_long()
                    if xlu.xlu_cfg_get_long(cfg, name.encode(), ctypes.byref(out_l), 0) == 0:
                        values[name] = out_l.value
                for name in lists:
                    lst, n = ctypes.c_void_p(), ctypes.c_int()
                    if xlu.xlu_cfg_get_list(cfg, name.encode(), ctypes.byref(lst), ctypes.byref(n), 0) == 0:
                        values[name] = [xlu.xlu_cfg_get_listitem(lst, i).decode() for i in range(n.value)]
                for spec in values.get("disk", []):
                    disk = ctypes.create_string_buffer(4096)    # larger than libxl_device_disk
                    xl.libxl_device_disk_init(disk)
                    specs = (ctypes.c_char_p * 1)(spec.encode())
                    bad = xlu.xlu_disk_parse(cfg, 1, specs, disk)
                    xl.libxl_device_disk_dispose(disk)
                    if bad:
                        err = err or bad
        finally:
            xlu.xlu_cfg_destroy(cfg)
            libc.fclose(fh)
        said = Path(report.name).read_text().strip()
    if err or said:
        raise BuildError(f"{path}: xl's parser refuses it: {said or f'error {err}'}")
    missing = [n for n in (*strings, *longs, *lists) if n not in values]
    if missing:
        raise BuildError(f"{path}: xl finds no {', '.join(missing)}")
    return values
