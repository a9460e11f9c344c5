"""A small seccomp-BPF deny-list for the bwrap backend (``bwrap --seccomp FD``), defense in depth.

The candidate already runs without capabilities, in its own user/PID/network namespaces. This filter
also takes away kernel interfaces untrusted Python has no use for and that have a history of
privilege-escalation bugs: debugging other processes (``ptrace``, ``process_vm_*``), namespaces and
mounts (``unshare``, ``setns``, ``mount`` and the new mount API), keyrings, ``bpf``,
``perf_event_open``, ``userfaultfd``, ``io_uring``, module/kexec loading, file handles. Blocked calls
fail with ``EPERM``; a syscall from a foreign ABI (32-bit ``int 0x80`` on x86-64, x32) kills the
process. Syscall numbers are from the kernel's ``unistd_64.h`` (x86-64) and ``asm-generic/unistd.h``
(aarch64); other architectures get no filter (and ``Sandbox`` refuses if one was requested).
"""

from __future__ import annotations

import errno
import platform
import struct

# name: (x86_64, aarch64)
BLOCKED_SYSCALLS: dict[str, tuple[int, int]] = {
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "chroot": (161, 51), "open_tree": (428, 428), "move_mount": (429, 429),
    "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "mount_setattr": (442, 442), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264), "acct": (163, 89), "swapon": (167, 224), "swapoff": (168, 225),
    "reboot": (169, 142),
}
_ARCHES = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}  # column, AUDIT_ARCH_*
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_RET_ALLOW, _RET_KILL_PROCESS = 0x7FFF0000, 0x80000000
_RET_EPERM = 0x00050000 | errno.EPERM
_X32_SYSCALL_BIT = 0x40000000


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def deny_list_program(machine: str | None = None) -> bytes | None:
    """The filter as raw ``struct sock_filter[]`` bytes for ``machine`` (default: this host), or None
    when the architecture is not supported."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        return None
    column, audit_arch = _ARCHES[machine]
    prog = [_insn(_LD_W_ABS, 4),  # seccomp_data.arch
            _insn(_JEQ_K, audit_arch, jt=1),
            _insn(_RET_K, _RET_KILL_PROCESS),
            _insn(_LD_W_ABS, 0)]  # seccomp_data.nr
    if machine == "x86_64":
        prog += [_insn(_JGE_K, _X32_SYSCALL_BIT, jf=1), _insn(_RET_K, _RET_KILL_PROCESS)]
    for numbers in BLOCKED_SYSCALLS.values():
        prog += [_insn(_JEQ_K, numbers[column], jf=1), _insn(_RET_K, _RET_EPERM)]
    prog.append(_insn(_RET_K, _RET_ALLOW))
    return b"".join(prog)
