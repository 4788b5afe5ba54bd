"""A fixed number of generation actors on Ray, each serving one request at a time, replaced when they die.

Why a pool of our own rather than Ray's `ActorPool` or actor restarts: a request must be answered exactly
once whatever happens to the actor serving it, because the driver has already charged the budget for it
and will cache the answer. So a request is retried here, on a fresh actor, when its actor dies (killed,
out of memory, its node gone), below the budget and the cache, which therefore see one request and one
answer. Ray's own restarts (`max_restarts`) do not apply to an actor ended with `ray.kill`, and re-run a
task on the same actor name, which would hide from the pool which actor is healthy.

Actors are started lazily, on the first cache miss that finds no idle one, up to `workers`: a run the
cache answers entirely starts none. Each actor asks Ray for `worker_cpus` CPUs and runs llama.cpp with as
many threads (`HONED_GGUF_THREADS`, unless the driver's environment sets it), so actors do not oversubscribe
a node. Ray is imported inside functions only: it is an optional dependency (`honed[ray]`).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from honed.errors import ProviderUnavailable
from honed.models.ray_worker import Generation, GenerationRequest, GenerationWorker

MAX_ATTEMPTS = 3  # per request: the actor it was sent to and two replacements
# The driver's settings that shape what a worker's provider does (context size, threads, batching) or where
# it finds a model (`HONED_CACHE_DIR/models` for assembled bundled models); never keys or other secrets.
FORWARDED_ENV_PREFIXES = ("HONED_GGUF_", "HONED_CACHE_DIR", "LITELLM_LOCAL_MODEL_COST_MAP")


@dataclass
class PoolStats:
    """What the pool did: requests sent to actors, actors started, actors found dead and replaced, retries; and
    the seconds answered requests took, as the driver waited for them and inside the actors' providers."""

    dispatched: int = 0
    completed: int = 0
    started: int = 0
    replaced: int = 0
    retried: int = 0
    wait_s: float = 0.0
    actor_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def worker_env(worker_cpus: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a worker starts with: the driver's forwarded settings, with llama.cpp's threads set to
    the actor's CPUs unless the driver chose them."""
    environ = dict(os.environ if environ is None else environ)
    env = {k: v for k, v in environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
    env.setdefault("HONED_GGUF_THREADS", str(worker_cpus))
    # An actor serves one request at a time, so a batched decode loop would never batch: it would only hold a
    # second context. The answers are the same either way (`honed.models.batching`).
    env["HONED_GGUF_BATCH"] = "0"
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


class ActorPool:
    """Up to `workers` `GenerationWorker` actors; `generate` blocks the calling thread until one answers."""

    def __init__(self, workers: int, worker_cpus: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.worker_cpus = worker_cpus
        self.stats = PoolStats()
        self._actor_class: Any = None  # the Ray actor class, made once per pool
        self._idle: list[Any] = []
        self._busy: dict[int, Any] = {}  # id(actor) -> actor, while it serves a request
        self._count = 0  # actors alive or being started
        self._changed = threading.Condition()
        self._closed = False

    def _ray_actor(self) -> Any:
        # Ray is optional (`honed[ray]`): imported only once a pool is made.
        import ray

        if self._actor_class is None:
            self._actor_class = ray.remote(num_cpus=self.worker_cpus, max_restarts=0, max_concurrency=1,
                                           runtime_env={"env_vars": worker_env(self.worker_cpus)})(GenerationWorker)
        return self._actor_class.remote()

    @property
    def closed(self) -> bool:
        return self._closed

    def actors(self) -> list[Any]:
        """The actors alive now, idle and busy (for tests and diagnostics)."""
        with self._changed:
            return [*self._idle, *self._busy.values()]

    def busy(self) -> list[Any]:
        """The actors serving a request right now."""
        with self._changed:
            return list(self._busy.values())

    def generate(self, request: GenerationRequest) -> Generation:
        """Send `request` to an idle actor and wait for its answer; retried on a new actor if that one dies.

        An error the actor's provider raised (a prompt too long for the context, a bad schema) is raised here
        as the provider raised it, so litellm and DSPy treat it exactly as the in-process provider's.
        """
        # Ray is optional (`honed[ray]`): imported only once a pool is used.
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        last: BaseException | None = None
        for attempt in range(MAX_ATTEMPTS):
            actor = self._acquire()
            with self._changed:
                self.stats.dispatched += 1
                self.stats.retried += attempt > 0
            sent = time.perf_counter()
            try:
                generation = ray.get(actor.generate.remote(request))
            except RayActorError as exc:  # the actor died (before or while serving): replace it, try again
                self._discard(actor)
                last = exc
                continue
            except RayTaskError as exc:  # the provider raised: the actor is fine, the request failed
                self._release(actor)
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, BaseException) else exc) from None
            except BaseException:
                self._release(actor)
                raise
            self._release(actor)
            with self._changed:
                self.stats.completed += 1
                self.stats.wait_s += time.perf_counter() - sent
                self.stats.actor_s += generation.seconds
            return generation
        reason = str(last).strip().splitlines()[0] if last is not None and str(last).strip() else "actor died"
        raise ProviderUnavailable(request.model, f"{MAX_ATTEMPTS} Ray workers in a row died serving one request "
                                                 f"({reason})")

    def _acquire(self) -> Any:
        with self._changed:
            while True:
                if self._closed:
                    raise ProviderUnavailable(None, "the Ray worker pool was shut down")
                if self._idle:
                    actor = self._idle.pop(0)
                    break
                if self._count < self.workers:
                    self._count += 1
                    self.stats.started += 1
                    actor = None
                    break
                self._changed.wait()
        if actor is None:
            try:
                actor = self._ray_actor()
            except BaseException:
                with self._changed:
                    self._count -= 1
                    self._changed.notify()
                raise
        with self._changed:
            self._busy[id(actor)] = actor
        return actor

    def _release(self, actor: Any) -> None:
        with self._changed:
            self._busy.pop(id(actor), None)
            if self._closed:
                self._kill(actor)
            else:
                self._idle.append(actor)
            self._changed.notify()

    def _discard(self, actor: Any) -> None:
        """Forget a dead actor; the next request that finds no idle actor starts its replacement."""
        with self._changed:
            self._busy.pop(id(actor), None)
            self._count -= 1
            self.stats.replaced += 1
            self._changed.notify()
        self._kill(actor)

    def close(self) -> None:
        """End every actor (those busy once their request is answered); later requests are refused."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._changed.notify_all()
        for actor in idle:
            self._kill(actor)

    @staticmethod
    def _kill(actor: Any) -> None:
        try:
            # Ray is optional (`honed[ray]`): imported only once a pool is used.
            import ray

            ray.kill(actor)
        except Exception:  # already gone, or Ray already shut down: nothing left to end
            pass
