#!/usr/bin/python3
"""Makes the public code of Swift static archives strippable by the linker.

    strippable-archive.py ARCHIVE...     (rewrites each archive in place)

swiftc marks every public function and variable of a module "retained" on ELF
(SHF_GNU_RETAIN), because a shared library's clients are not part of its link. The
toolchain's static libraries (libswiftCore.a and the others) are built the same way, so
`--gc-sections` cannot drop any of the standard library from a statically linked
program: the loader carried all of it, about 4 MiB, whatever it called.

An executable linked with `--no-export-dynamic` has no outside clients: what it does not
reference, nothing can. This clears the flag on the sections that hold one symbol each
(`.text.NAME`, `.rodata.NAME`, `.data.NAME`, `.data.rel.ro.NAME`) in every ELF member, so
the linker keeps what is reachable from the program and from the runtime's metadata
records (`swift5_*`, which stay retained: the runtime finds them by section, not by
reference). Only section header flags change; sizes and offsets do not, so the archive's
symbol index stays valid.
"""
import struct
import sys

SHF_GNU_RETAIN = 0x200000
ONE_SYMBOL_SECTIONS = (b".text.", b".rodata.", b".data.")


def unretain_elf(data: bytearray, start: int) -> int:
    """Clears SHF_GNU_RETAIN on one-symbol sections of the ELF object at `start`."""
    if data[start + 4] != 2 or data[start + 5] != 1:
        raise ValueError("not a 64-bit little-endian ELF object")
    shoff, = struct.unpack_from("<Q", data, start + 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, start + 0x3A)
    headers = start + shoff
    if shnum == 0:  # more sections than fit in e_shnum: the count is in section 0
        shnum, = struct.unpack_from("<Q", data, headers + 32)
    if shstrndx == 0xFFFF:
        shstrndx, = struct.unpack_from("<I", data, headers + 40)
    names, = struct.unpack_from("<Q", data, headers + shstrndx * shentsize + 24)
    names += start
    cleared = 0
    for index in range(shnum):
        header = headers + index * shentsize
        name_offset, = struct.unpack_from("<I", data, header)
        flags, = struct.unpack_from("<Q", data, header + 8)
        if not flags & SHF_GNU_RETAIN:
            continue
        name_start = names + name_offset
        if data.startswith(ONE_SYMBOL_SECTIONS, name_start):
            struct.pack_into("<Q", data, header + 8, flags & ~SHF_GNU_RETAIN)
            cleared += 1
    return cleared


def unretain_archive(path: str) -> int:
    data = bytearray(open(path, "rb").read())
    if not data.startswith(b"!<arch>\n"):
        raise ValueError(f"{path}: not an ar archive")
    offset, cleared = 8, 0
    while offset + 60 <= len(data):
        size = int(data[offset + 48:offset + 58].decode().strip())
        member = offset + 60
        if data.startswith(b"\x7fELF", member):
            cleared += unretain_elf(data, member)
        offset = member + size + (size & 1)
    with open(path, "wb") as file:
        file.write(data)
    return cleared


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for archive in sys.argv[1:]:
        try:
            count = unretain_archive(archive)
        except (OSError, ValueError, struct.error) as error:
            sys.exit(f"strippable-archive: {archive}: {error}")
        print(f"strippable-archive: {archive}: {count} sections strippable", file=sys.stderr)
