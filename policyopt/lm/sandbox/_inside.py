"""The program that runs INSIDE the sandbox (standard library only; never imported by policyopt).

Usage: ``python -I -S -B _inside.py CHANNEL_FD JOB_FILE`` (the job is ``marshal`` data written by
the parent; ``json`` is not imported: its import alone costs ~18 ms). It reports *observations*
only: that it started, compile errors, the exception class of a failure, and the values that test
expressions evaluated to, as JSON lines on the channel file descriptor. It never reports a verdict:
the parent compares the values against expected outputs that never enter the sandbox, so nothing
the candidate prints, patches or forges here can turn a wrong answer into a PASS.

Modes (``job["mode"]``):
- ``script``: run the candidate as ``__main__`` (stdin/stdout are the real ones).
- ``calls``:  exec the candidate, then evaluate each test expression in its namespace.
- ``bench``:  exec the candidate, then evaluate the benchmark expressions ``repeat`` times.
- ``sql``:    run SQL queries, each on a fresh in-memory SQLite database built from a setup script.
"""

import builtins
import errno
import marshal
import os
import sys

_MAIN_PID = os.getpid()
_WRITE = os.write
_GETPID = os.getpid
_LIMIT_ERRNOS = {errno.EFBIG, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_BUILTINS = dict(builtins.__dict__)
_RESTORE = builtins.__dict__.update


def restore_builtins():
    """Undo the candidate's monkeypatching of ``builtins`` before the harness itself runs again."""
    _RESTORE(_BUILTINS)


def send(fd, obj):
    """Write one JSON line; forked children of the candidate never speak for the harness."""
    restore_builtins()
    if _GETPID() != _MAIN_PID:
        return
    try:
        data = (dumps(obj) + "\n").encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        data = b'{"invalid": 1}\n'
    try:
        while data:
            data = data[_WRITE(fd, data):]
    except OSError:
        pass


_ESCAPES = {i: f"\\u{i:04x}" for i in list(range(32)) + list(range(0xD800, 0xE000))}
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"'})
_FLOATS = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}


def dumps(obj):
    """Minimal JSON writer for the harness's own messages (dict/list/str/int/float/bool/None)."""
    kind = type(obj)
    if obj is None:
        return "null"
    if kind is bool:
        return "true" if obj else "false"
    if kind is int:
        return str(obj)
    if kind is float:
        text = repr(obj)
        return _FLOATS.get(text, text)
    if kind is str:
        return '"' + obj.translate(_ESCAPES) + '"'
    if kind is list:
        return "[" + ",".join([dumps(v) for v in obj]) + "]"
    if kind is dict:
        return "{" + ",".join([dumps(k) + ":" + dumps(v) for k, v in obj.items()]) + "}"
    raise TypeError("cannot serialise " + kind.__name__)


def classify(exc):
    """Failure kind of an exception: memory, output_limit (disk/file cap) or runtime."""
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError) and exc.errno in _LIMIT_ERRNOS:
        return "output_limit"
    return "runtime"


def failure(exc):
    restore_builtins()
    try:
        message = str(exc)[:300]
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not take the harness down
        message = "<unprintable>"
    return {"kind": classify(exc), "error": type(exc).__name__, "message": message}


def encode(value, depth=0):
    """Tagged JSON of plain data with exact types; anything else (subclasses too) raises TypeError."""
    if depth > 64:
        raise TypeError("value nested deeper than 64 levels")
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind in (list, tuple, set, frozenset):
        tag = {list: "l", tuple: "t", set: "s", frozenset: "fs"}[kind]
        return {tag: [encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"by": value.hex()}
    raise TypeError("unsupported return type " + kind.__name__)


def compile_candidate(fd, job):
    with open(os.path.join(os.path.dirname(sys.argv[2]), job["source"]), "rb") as f:
        source = f.read()  # bytes: compile() decodes them (PEP 263) and reports bad UTF-8 as SyntaxError
    try:
        return compile(source, "<candidate>", "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError) as exc:
        send(fd, {"compile_error": type(exc).__name__ + ": " + str(exc)[:300]})
        sys.stderr.write(type(exc).__name__ + ": " + str(exc) + "\n")
        os._exit(1)


def run_script(fd, job):
    code = compile_candidate(fd, job)
    sys.argv = ["main.py"]
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then the process exits 1
        send(fd, {"error": failure(exc)})
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


def run_tests(fd, job):
    code = compile_candidate(fd, job)
    namespace = {"__name__": "__candidate__", "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001
        send(fd, {"setup_error": failure(exc)})
        os._exit(1)
    restore_builtins()
    repeat = int(job.get("repeat", 1))
    for index, expression in job["calls"]:
        send(fd, {"begin": index})
        try:
            compiled = compile(expression, "<test>", "eval")
            for _ in range(repeat):
                value = eval(compiled, namespace)
            restore_builtins()
        except BaseException as exc:  # noqa: BLE001 - SystemExit inside a test is a runtime error too
            send(fd, {"result": index, "failure": failure(exc)})
            continue
        payload = {"result": index}
        if job["mode"] == "calls":
            try:
                payload["value"] = encode(value)
            except BaseException as exc:  # noqa: BLE001 - a wrong return type is a wrong answer
                payload = {"result": index, "failure": {"kind": "wrong_type", "error": type(exc).__name__}}
        send(fd, payload)


def run_sql(fd, job):
    import sqlite3

    for index, query in job["queries"]:
        if job.get("db_file"):  # a read-only database file handed in by the parent
            path = os.path.join(os.path.dirname(sys.argv[2]), job["db_file"])
            connection = sqlite3.connect("file:" + path + "?mode=ro&immutable=1", uri=True)
        else:
            connection = sqlite3.connect(":memory:")
            connection.executescript(job["setup"])
        if index == 0:
            tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            schema = {t: [c[1] for c in connection.execute("PRAGMA table_info(" + _quote(t) + ")")] for t in tables}
            send(fd, {"schema": schema})
        send(fd, {"begin": index})
        try:
            rows = connection.execute(query).fetchmany(int(job["row_limit"]) + 1)
            if len(rows) > int(job["row_limit"]):
                payload = {"result": index, "failure": {"kind": "output_limit", "error": "TooManyRows"}}
            else:
                payload = {"result": index, "value": encode([list(r) for r in rows])}
        except sqlite3.Error as exc:
            text = str(exc)
            syntax = ("syntax error" in text or "incomplete input" in text or "unrecognized token" in text)
            kind = "compile" if syntax else "runtime"
            payload = {"result": index, "failure": {"kind": kind, "error": type(exc).__name__,
                                                    "message": text[:300]}}
        except BaseException as exc:  # noqa: BLE001
            payload = {"result": index, "failure": failure(exc)}
        connection.close()
        send(fd, payload)


def _quote(name):
    return '"' + name.replace('"', '""') + '"'


def main():
    fd = int(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        job = marshal.load(f)
    send(fd, {"ready": 1})
    mode = job["mode"]
    if mode == "script":
        run_script(fd, job)
    elif mode in ("calls", "bench"):
        run_tests(fd, job)
    elif mode == "sql":
        run_sql(fd, job)
    send(fd, {"done": 1})
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
