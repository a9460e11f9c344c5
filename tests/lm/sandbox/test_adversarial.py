"""Adversarial programs: each case asserts its verdict AND that the host is untouched (``host``)."""

from __future__ import annotations

import os
import socket
import threading
import time

from policyopt.lm.sandbox import Verdict

from .conftest import FAST


def test_infinite_loop_times_out(box, host):
    result, raw = box.run("while True:\n    pass\n", limits=FAST)
    assert result.verdict is Verdict.TIMEOUT
    assert raw.killed in ("wall", "cpu") and raw.wall_s < 4.0


def test_cpu_spin_ignoring_sigterm_and_sigalrm_times_out(box, host):
    source = ("import signal\n"
              "for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGXCPU, signal.SIGINT):\n"
              "    signal.signal(s, signal.SIG_IGN)\n"
              "signal.alarm(1)\n"
              "while True:\n    pass\n")
    result, raw = box.run(source, limits=FAST)
    assert result.verdict is Verdict.TIMEOUT
    assert raw.wall_s < 4.0


def test_sleep_forever_times_out_on_wall_clock(box, host):
    result, raw = box.run("import time\ntime.sleep(10**6)\n", limits=FAST)
    assert result.verdict is Verdict.TIMEOUT
    assert raw.killed == "wall" and raw.cpu_s < 0.5


def test_memory_bomb_hits_memory_limit(box, host):
    result, _ = box.run("blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))\n")
    assert result.verdict is Verdict.MEMORY
    result, _ = box.run("x = bytearray(10**10)\n")
    assert result.verdict is Verdict.MEMORY


def test_fork_bomb_is_capped_and_fully_killed(box, host):
    result, raw = box.run("import os\nwhile True:\n    os.fork()\n")
    assert result.verdict is Verdict.RUNTIME_ERROR  # fork() fails with EAGAIN at RLIMIT_NPROC
    assert raw.leftover == 0
    result, raw = box.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                          limits=FAST)
    assert result.verdict is Verdict.TIMEOUT
    assert raw.leftover == 0


def test_setsid_child_outliving_its_parent_dies_with_the_run(box, host):
    marker = host.outside_dir / "late.txt"
    source = ("import os, time\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        time.sleep(0.5)\n"
              f"        open({str(marker)!r}, 'w').write('escaped')\n"
              "        time.sleep(10**6)\n"
              "    os._exit(0)\n"
              "print('parent done')\n")
    result, raw = box.run(source)
    assert result.verdict is Verdict.PASS and raw.stdout == b"parent done\n"
    time.sleep(0.8)  # the grandchild would have written by now had it survived
    assert not marker.exists()


def test_disk_fill_hits_file_size_and_scratch_limits(box, host):
    result, _ = box.run("with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))\n")
    assert result.verdict is Verdict.OUTPUT_LIMIT  # RLIMIT_FSIZE -> EFBIG
    many = ("i = 0\nwhile True:\n    with open(f'part{i}', 'wb') as f:\n        f.write(b'x' * (3 << 20))\n"
            "    i += 1\n")
    result, _ = box.run(many)
    assert result.verdict is Verdict.OUTPUT_LIMIT  # the size-capped tmpfs -> ENOSPC


def test_ten_megabytes_to_stdout_is_capped(box, host):
    result, raw = box.run("import sys\nsys.stdout.write('x' * (10 << 20))\n")
    assert result.verdict is Verdict.OUTPUT_LIMIT
    assert raw.killed == "stdout" and len(raw.stdout) <= box.config.limits.output_bytes


def test_parent_environment_secrets_and_home_are_invisible(box, host):
    source = ("import os, json\n"
              "found = {'env': dict(os.environ), 'paths': {}}\n"
              f"for p in ({host.home!r}, '/work', '/root', '/home', '/etc/passwd', '/tmp', {str(host.canary)!r}):\n"
              "    found['paths'][p] = os.path.exists(p)\n"
              "for pid in os.listdir('/proc'):\n"
              "    if pid.isdigit():\n"
              "        try:\n"
              "            found['env'][pid] = open(f'/proc/{pid}/environ').read()\n"
              "        except OSError:\n"
              "            pass\n"
              "print(json.dumps(found))\n")
    result, raw = box.run(source)
    assert result.verdict is Verdict.PASS
    assert host.secret.encode() not in raw.stdout
    assert b"POLICYOPT_TEST_SECRET" not in raw.stdout
    import json

    found = json.loads(raw.stdout)
    assert not any(found["paths"].values()), found["paths"]
    assert found["env"]["HOME"] == "/box" and "PATH" in found["env"]


def test_writing_outside_the_temp_dir_fails(box, host):
    for target in (host.outside_dir / "pwned.txt", "/usr/pwned.txt", "/pwned.txt", "/tmp/pwned.txt",
                   os.path.join(host.home, "pwned.txt")):
        result, _ = box.run(f"open({str(target)!r}, 'w').write('pwned')\n")
        assert result.verdict is Verdict.RUNTIME_ERROR, target
    assert not os.path.exists("/usr/pwned.txt") and not os.path.exists("/pwned.txt")
    assert not os.path.exists("/tmp/pwned.txt") and not os.path.exists(os.path.join(host.home, "pwned.txt"))


def test_deleting_host_files_fails(box, host):
    result, _ = box.run(f"import os\nos.remove({str(host.canary)!r})\n")
    assert result.verdict is Verdict.RUNTIME_ERROR
    result, _ = box.run(f"import shutil\nshutil.rmtree({str(host.outside_dir)!r})\n")
    assert result.verdict is Verdict.RUNTIME_ERROR  # the host directory does not even exist inside


def test_tcp_connection_to_host_server_is_impossible(box, host):
    source = ("import socket\n"
              f"socket.create_connection(('127.0.0.1', {host.server.port}), timeout=0.5)\n")
    result, raw = box.run(source)
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert b"ConnectionRefused" in raw.stderr or b"unreachable" in raw.stderr
    result, _ = box.run("import socket\nsocket.create_connection(('8.8.8.8', 53), timeout=0.5)\n")
    assert result.verdict is Verdict.RUNTIME_ERROR


def test_bound_port_is_not_reachable_from_the_host(box, host):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = (f"import socket\ns = socket.socket()\ns.bind(('127.0.0.1', {port}))\ns.listen(1)\n"
              "print('listening', flush=True)\ns.accept()\n")
    reached = []

    def knock() -> None:
        for _ in range(6):
            time.sleep(0.15)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                reached.append(True)
            except OSError:
                pass

    knocker = threading.Thread(target=knock)
    knocker.start()
    result, raw = box.run(source, limits=FAST)
    knocker.join()
    assert result.verdict is Verdict.TIMEOUT and raw.stdout == b"listening\n"
    assert reached == []


def test_killing_the_parent_and_everything_else_fails(box, host):
    source = ("import os, signal\n"
              f"for pid in ({os.getpid()}, {os.getppid()}, 1, os.getppid()):\n"
              "    try:\n"
              "        os.kill(pid, signal.SIGKILL)\n"
              "    except OSError as e:\n"
              "        pass\n"
              "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
              "print('still here')\n")
    result, raw = box.run(source)
    assert result.verdict is Verdict.PASS and raw.stdout == b"still here\n"
    os.kill(os.getpid(), 0)  # we are alive, and so is our parent
    os.kill(os.getppid(), 0)


def test_reading_stdin_gets_eof_immediately(box, host):
    result, raw = box.run("import sys\nprint(len(sys.stdin.read()))\n")
    assert result.verdict is Verdict.PASS and raw.stdout == b"0\n" and raw.wall_s < 1.5
    result, _ = box.run("input()\n")
    assert result.verdict is Verdict.RUNTIME_ERROR  # EOFError, not a hang


def test_seccomp_denies_kernel_interfaces_untrusted_code_has_no_use_for(box, host):
    source = ("import ctypes, os, platform\n"
              "libc = ctypes.CDLL(None, use_errno=True)\n"
              "from_table = {'x86_64': {'keyctl': 250, 'io_uring_setup': 425, 'bpf': 321, 'unshare': 272,\n"
              "                         'ptrace': 101, 'getpid': 39},\n"
              "              'aarch64': {'keyctl': 219, 'io_uring_setup': 425, 'bpf': 280, 'unshare': 97,\n"
              "                          'ptrace': 117, 'getpid': 172}}[platform.machine()]\n"
              "for name, nr in from_table.items():\n"
              "    r = libc.syscall(nr, 0, 0, 0, 0)\n"
              "    print(name, r if r != -1 else os.strerror(ctypes.get_errno()))\n")
    result, raw = box.run(source)
    assert result.verdict is Verdict.PASS
    lines = dict(line.split(" ", 1) for line in raw.stdout.decode().splitlines())
    for name in ("keyctl", "io_uring_setup", "bpf", "unshare", "ptrace"):
        assert lines[name] == "Operation not permitted", (name, lines)
    assert lines["getpid"] == "1"  # ordinary syscalls work; the candidate is PID 1 of its namespace
