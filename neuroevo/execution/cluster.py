"""The driver's Ray: started or joined within bounded waits, its own output kept out of the terminal, stopped once.

Ray writes to the driver's stderr from Python (the 'ray' loggers) and from its C++ core worker (fd 2). Unless
`--verbose`, fd 2 goes to a log file and sys.stderr to a copy of the terminal, so neuroevo's lines, its progress
bar and Python tracebacks still reach the user while Ray's do not. The run directory does not exist while Ray
starts, so the log is a temporary file until `keep_log` appends it to RUN_DIR/ray.log and writes there.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

RETRY_GCS_WAIT_S = 120  # the second start's wait for the GCS port (Ray's default: 30 s)
_log: dict = {}  # the capture in force: "path", the "terminal" fd and the "stderr" it replaced


class ClusterError(Exception):
    pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with which one."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def capture_log() -> Path:
    """Send Ray's output (fd 2 and the 'ray' loggers) to a temporary file; neuroevo's stderr stays the terminal."""
    fd, path = tempfile.mkstemp(prefix="neuroevo-ray-", suffix=".log")
    sys.stderr.flush()
    terminal = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    _log.update(path=Path(path), terminal=terminal, stderr=sys.stderr)
    if _is_fd_2(sys.stderr):  # a notebook's sys.stderr is no file descriptor, and stays as it is
        sys.stderr = os.fdopen(terminal, "w", buffering=1, closefd=False)
    return Path(path)


def keep_log(ray_log: Path) -> None:
    """Once the run directory exists: Ray's output so far appended to `ray_log`, and the rest written there."""
    if "path" not in _log:
        return
    fd = os.open(ray_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, _log["path"].read_bytes())
    os.dup2(fd, 2)
    os.close(fd)
    _log["path"].unlink(missing_ok=True)
    _log["path"] = ray_log


def release_log() -> None:
    """fd 2 back to the terminal; a temporary log that no run directory took and no message names is removed."""
    if "terminal" in _log:
        sys.stderr.flush()
        os.dup2(_log["terminal"], 2)
        os.close(_log["terminal"])
        sys.stderr = _log["stderr"]
        if _log["path"].name.startswith("neuroevo-ray-") and not _log.get("named"):
            _log["path"].unlink(missing_ok=True)
        _log.clear()


def _is_fd_2(stream: object) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def on_signals(handler: object, *signums: int) -> None:
    """SIGINT's and SIGTERM's handler (or those of `signums`); only the main thread may set one, elsewhere nothing
    changes."""
    if threading.current_thread() is threading.main_thread():
        for signum in signums or (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, handler)


def _quiet_ray_loggers() -> None:
    """Ray's Python loggers write to sys.stderr when they emit; point them at fd 2 (the log) instead."""
    logger = logging.getLogger("ray")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(logging.Formatter("%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"))
    logger.addHandler(handler)


def _reachable(address: str, timeout: float) -> None:
    """A GCS address host:port that takes no TCP connection fails here at once, not after Ray's retries."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray://..., or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(f"--address: nothing accepts connections at {address} ({e.strerror or e}); "
                           f"is the cluster's head node up (`ray start --head` there)?") from None


def start(address: str | None, dashboard: bool, connect_timeout: float, verbose: bool) -> None:
    """Join the cluster at `address` or $RAY_ADDRESS within `connect_timeout` seconds, else start a private one
    reachable from this machine only (a second try with a longer wait if the first times out on a busy machine)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # Ray's GCS client waits this long per attempt, and retries once a second this many times (default 20)
        os.environ["RAY_gcs_rpc_server_connect_timeout_s"] = str(max(1, int(connect_timeout / 4)))
        os.environ["RAY_py_gcs_connect_timeout_s"] = str(max(1, int(connect_timeout / 2)))
        os.environ["RAY_gcs_server_port_wait_time_s"] = "1"
        _reachable(address, connect_timeout)
    else:
        # Without this Ray binds its processes to the machine's routable address; read when ray is imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if not verbose:
        _quiet_ray_loggers()
    options = dict(log_to_driver=verbose)
    if address:
        try:
            _init(ray, address=address, **options)
        except ClusterError as e:
            raise ClusterError(f"--address: could not join the Ray cluster at {address} within about "
                               f"{connect_timeout:g} s ({e}); check the address, or raise --connect-timeout") from None
        return
    local = dict(address="local", _node_ip_address="127.0.0.1", include_dashboard=dashboard,
                 dashboard_host="127.0.0.1", **options)
    try:
        _init(ray, **local)
    except ClusterError as first:
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(RETRY_GCS_WAIT_S))
        try:
            _init(ray, **local)
        except ClusterError as e:
            log = f"; Ray's log: {_log['path']}" if "path" in _log else ""
            _log["named"] = True
            raise ClusterError(f"ray: the local Ray cluster did not start, twice ({first}; then {e}); the machine "
                               f"may be too busy: try again when it is less loaded, or start one with "
                               f"`ray start --head` and pass --address{log}") from None


def _init(ray, **options) -> None:
    """ray.init; what it raises is one line, and what a failed start left running is stopped."""
    started = _descendants()
    try:
        ray.init(**options)
    except BaseException as e:
        left = _descendants() - started
        ray.shutdown()
        _kill(left)
        if isinstance(e, SystemExit):  # Ray's own SIGTERM handler, in force during ray.init, exits this way
            raise Interrupted(signal.SIGTERM) from None
        if isinstance(e, KeyboardInterrupt):
            raise
        raise ClusterError(_first_line(e)) from None


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _descendants() -> set:
    """This process's children and theirs: a local cluster's GCS, raylet, workers and agents."""
    import psutil  # Ray's own copy, once ray is imported

    try:
        return set(psutil.Process().children(recursive=True))
    except psutil.Error:
        return set()


def stop() -> None:
    """ray.shutdown, then every process of the local cluster that outlived it killed and waited for.

    SIGINT and SIGTERM are ignored from here on: a second Ctrl-C must not cut the shutdown short.
    """
    on_signals(signal.SIG_IGN)
    if "ray" not in sys.modules:
        return
    import ray

    processes = _descendants()
    ray.shutdown()
    _kill(processes)


def _kill(processes: set) -> None:
    import psutil

    alive = []
    for p in processes:
        try:
            p.kill()
            alive.append(p)
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)
