"""Joining a Ray cluster, or starting a local one, for `executor="ray"`: offline, quiet, and failing in one line.

Why a module of its own: what Ray does when pointed at nothing is wait (over two minutes of GCS reconnect
warnings for a closed port, measured with Ray 2.60) and then raise a stack of internal errors; and what it
does by default when it starts is look up the machine's address and report usage statistics. So:

- an address given is probed first (a TCP connect with a short timeout); nothing listening there is one
  `ConfigError` naming the address and what to do, before Ray is asked;
- a local cluster is a new one of this process's own (`ray.init(address="local", num_cpus=...,
  include_dashboard=False)`, its node addressed as 127.0.0.1), with usage statistics off
  (`RAY_USAGE_STATS_ENABLED=0`), so a run opens no connection off this machine and never joins a cluster some
  earlier `ray start` left behind (Ray's servers still listen on every interface, behind its token auth);
- worker output is not forwarded to the driver (`log_to_driver=False`), so `--json` stays one object on stdout.

Ray is imported inside these functions only: it is an optional dependency (`pip install "honed[ray]"`), and
`import honed` must neither need it nor pay for importing it.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

from honed.errors import ConfigError

PROBE_TIMEOUT_S = 3.0
RAY_CLIENT_PORT = 10001  # `ray://host` without a port: Ray Client's default
GCS_PORT = 6379  # `host` without a port: `ray start --head`'s default
# What a local cluster may store in shared memory: requests and answers are a few kilobytes each.
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2


_UNSET: Any = object()
_joined: Any = _UNSET  # the address `connect` joined (None: the local cluster it started), while joined


def import_ray() -> Any:
    """The `ray` module, or a `ConfigError` saying how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before Ray is imported: it reads this then too
    try:
        # Ray is optional (`honed[ray]`): imported only once executor="ray" is chosen.
        import ray
    except ImportError:
        raise ConfigError('executor="ray" needs Ray: pip install "honed[ray]" (or pip install ray==2.60.0)'
                          ) from None
    return ray


def probe(address: str) -> None:
    """Raise `ConfigError` unless something accepts a TCP connection at `address` (`host:port`, `ray://...`).

    `auto` is the cluster `ray start` last started on this machine: the address it wrote down is probed (a
    `ray start` that was killed leaves it behind, and Ray would wait minutes for it).
    """
    shown = address
    if address == "auto":
        found = _auto_address()
        if found is None:
            return  # none written down: Ray says so at once
        address, shown = found, f"auto ({found}, where the last `ray start` here said it runs)"
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host:
        raise ConfigError(f"--ray-address {address!r} is not an address; give HOST:PORT (e.g. 127.0.0.1:6379), "
                          "ray://HOST:10001 or auto")
    port = port or (RAY_CLIENT_PORT if parts.scheme == "ray" else GCS_PORT)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(f"no Ray cluster at {shown} ({host}:{port}: {exc.strerror or exc}); start one with "
                          "`ray start --head` and pass the address it prints, or leave --ray-address out to run "
                          "on a local Ray started for this process") from None


def _auto_address() -> str | None:
    """The HOST:PORT `address="auto"` means to Ray (`$RAY_ADDRESS`, else its bootstrap file), or None."""
    try:
        # Ray is optional (`honed[ray]`), and this is its own lookup (an internal function: guarded).
        from ray._private.services import get_ray_address_from_environment

        found = get_ray_address_from_environment("auto", None)
    except Exception:  # nothing found, or another Ray version: leave "auto" to ray.init
        return None
    return found if isinstance(found, str) and found not in ("", "auto", "local") else None


def connect(address: str | None, workers: int | None, worker_cpus: int) -> int:
    """Join the cluster at `address`, or start a local one (or reuse the one this process already has).

    `address` None means `$RAY_ADDRESS`, else a new local cluster (`auto` joins the one `ray start` runs on this
    machine). Returns the CPUs the cluster offers. A local
    cluster gets at least `workers * worker_cpus` CPUs, so every actor can be placed even on a machine with
    fewer cores.
    """
    global _joined
    address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own convention for "the cluster to use"
    ray = import_ray()
    if address:
        probe(address)  # first: an address with nothing behind it must not end the cluster this process has
    if ray.is_initialized():
        if _joined is _UNSET or _joined == address:  # started by the caller, or already the one asked for
            return _cpus(ray)
        ray.shutdown()  # honed joined another cluster before: leave it for the one asked for now
        _joined = _UNSET
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
    if address:
        options["address"] = address
    else:
        wanted = (workers or os.cpu_count() or 1) * worker_cpus
        # "local": always a new cluster of this process's own. Without it Ray joins the cluster its bootstrap
        # file names (`/tmp/ray/ray_current_cluster`), which a killed `ray start` leaves behind: Ray then waits
        # minutes for a cluster that is gone.
        options.update(address="local", num_cpus=max(wanted, os.cpu_count() or 1),
                       object_store_memory=LOCAL_OBJECT_STORE_BYTES, _node_ip_address="127.0.0.1")
    try:
        ray.init(**options)
        _joined = address
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"could not join {where}: {first}; check `ray status` there, or leave --ray-address "
                          "out to run on a local Ray") from None
    return _cpus(ray)


def _cpus(ray: Any) -> int:
    return int(ray.cluster_resources().get("CPU", 0))
