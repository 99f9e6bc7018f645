"""The Ray executor: one Ray task per job on a cluster (`--ray-address`) or on a Ray started for
the run. Imported only when `--executor ray` is asked for; Ray is the optional extra `harness[ray]`.

Before any training it checks, each within `--ray-timeout` seconds (never a hang):
- the address answers (TCP), and Ray accepts this driver (token authentication, versions);
- every node with CPUs answers a probe task, runs the same Python (major.minor), Ray and harness
  versions as this driver, and sees the run folder at the same path with the same contents (a
  token file the driver wrote): workers write fold folders there, so a shared filesystem is needed.
"""

from __future__ import annotations

import logging
import os
import platform
import secrets
from pathlib import Path
from typing import Any

from harness.core.errors import RunError, UsageError
from harness.executors.base import RAY_INSTALL, RAY_PIN, Executor, Failure, Job, call_with_timeout, tcp_reachable
from harness.train.jobs import JobData, Where, clear_keras, execute

AUTH_HINT = ("if the cluster uses token authentication, this driver needs the same token "
             "(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token / RAY_AUTH_TOKEN_PATH, with RAY_AUTH_MODE=token)")


def _task(job: Job, data: JobData, cpus: int) -> dict:
    """A job in a Ray worker. Workers are reused from job to job, as local ones are (TensorFlow
    imported once, its pools sized by the first job: every job of a run asks for the same CPUs),
    and each job starts from a cleared Keras session and its own seeds."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    try:
        return execute(job, data, Where("ray", threads=cpus, node=node[:12]))
    finally:
        clear_keras()


def _probe(path: str, token: str) -> dict[str, Any]:
    """What a node is: its versions, and whether it sees the driver's run folder."""
    import socket

    import ray

    from harness import __version__

    try:
        sees = Path(path).read_text() == token
    except OSError:
        sees = False
    return {"host": socket.gethostname(), "python": platform.python_version(), "ray": ray.__version__,
            "harness": __version__, "sees_run_dir": sees}


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, *, address: str | None, jobs: int | None, cpus_per_job: int, timeout: float) -> None:
        super().__init__()
        self.address, self.max_jobs, self.cpus_per_job, self.timeout = address, jobs, cpus_per_job, timeout
        self._refs: dict[Any, Job] = {}
        self._nodes: list[dict[str, Any]] = []
        self._resources: dict[str, float] = {}
        self._connected = False

    # ------------------------------------------------------------------ connect and check

    def _import_ray(self) -> Any:
        if self.address is None:
            # A Ray started for this run listens on the loopback only (read when ray is imported).
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ImportError:
            raise UsageError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL} "
                             f"(installs {RAY_PIN})") from None
        return ray

    def _connect(self, ray: Any) -> None:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
        if self.address and self.address not in ("auto",) and not self.address.startswith("ray://"):
            why = tcp_reachable(self.address, min(self.timeout, 5.0))
            if why:
                raise RunError(f"cannot reach {where}: {why} (is `ray start --head` running there, and is "
                               f"--ray-address HOST:PORT its GCS address?)")
        kwargs: dict[str, Any] = {"address": self.address, "logging_level": logging.ERROR, "log_to_driver": False}
        if self.address is None:
            kwargs.update(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=256 * 2**20)
        try:
            if self.address is None:
                # In this thread: Ray gives the processes it starts PR_SET_PDEATHSIG, which fires
                # when the *thread* that started them ends. Starting a local Ray does not hang.
                ray.init(**kwargs)
                done = True
            else:  # connecting can retry for minutes (a wrong token): bound it
                done, _ = call_with_timeout(lambda: ray.init(**kwargs), self.timeout)
        except ray.exceptions.AuthenticationError as e:
            raise RunError(f"{where} refused this driver: {e.message}; {AUTH_HINT}") from None
        except (RuntimeError, ConnectionError, ValueError) as e:
            msg = " ".join(str(e).split())
            if "version mismatch" in msg.lower():
                raise RunError(f"{where} runs another Ray or Python version than this driver "
                               f"(Ray {ray.__version__}, Python {platform.python_version()}): {msg[:300]}") from None
            raise RunError(f"cannot connect to {where}: {msg[:300]}") from None
        if not done:
            raise RunError(f"no answer from {where} within {self.timeout:g} s (--ray-timeout); {AUTH_HINT}")
        self._connected = True

    def _check_nodes(self, ray: Any, run_dir: Path | None) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from harness import __version__

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        workers = [n for n in nodes if n["Resources"].get("CPU", 0) >= 1]
        if not workers:
            raise RunError("the Ray cluster has no node with CPUs to run jobs on (add workers with `ray start`)")
        biggest = max(int(n["Resources"]["CPU"]) for n in workers)
        if biggest < self.cpus_per_job:
            raise UsageError(f"--cpus-per-job {self.cpus_per_job}: no Ray node has that many CPUs "
                             f"(the largest has {biggest})")
        token = secrets.token_hex(8)
        probe_file = None
        if run_dir is not None:
            probe_file = Path(run_dir).resolve() / f".probe-{token}"
            probe_file.write_text(token)
        probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
        try:
            refs = {probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                    .remote(str(probe_file or "/nonexistent"), token): n for n in workers}
            ready, missing = ray.wait(list(refs), num_returns=len(refs), timeout=self.timeout)
            if missing:
                names = ", ".join(refs[r]["NodeManagerAddress"] + " " + refs[r]["NodeID"][:12] for r in missing)
                raise RunError(f"Ray node(s) {names} did not run a probe task within {self.timeout:g} s "
                               f"(--ray-timeout): their workers cannot start (another Python or Ray "
                               f"version, or harness not installed there?)")
            mine = {"python": ".".join(platform.python_version_tuple()[:2]), "ray": ray.__version__,
                    "harness": __version__}
            for ref in ready:
                node = refs[ref]
                label = f"Ray node {node['NodeManagerAddress']} ({node['NodeID'][:12]})"
                try:
                    info = ray.get(ref, timeout=self.timeout)
                except ray.exceptions.RayError as e:
                    raise RunError(f"{label} cannot run harness jobs: {str(e).strip().splitlines()[-1][:300]} "
                                   f"(install harness, with the same version, on every node)") from None
                theirs = {"python": ".".join(info["python"].split(".")[:2]), "ray": info["ray"],
                          "harness": info["harness"]}
                diff = [f"{k} {theirs[k]} there, {mine[k]} here" for k in mine if theirs[k] != mine[k]]
                if diff:
                    raise RunError(f"{label} runs other versions than this driver: {'; '.join(diff)}; "
                                   f"every node needs the same Python, Ray ({RAY_PIN}) and harness")
                if probe_file is not None and not info["sees_run_dir"]:
                    raise RunError(f"{label} (host {info['host']}) cannot see the run folder {probe_file.parent}: "
                                   f"workers write fold folders there, so it must be on a filesystem shared "
                                   f"by every node at the same path (--runs-dir / HARNESS_RUNS_DIR)")
                self._nodes.append({"node": node["NodeID"][:12], "host": info["host"],
                                    "address": node["NodeManagerAddress"],
                                    "cpus": int(node["Resources"].get("CPU", 0)),
                                    "memory_gb": round(node["Resources"].get("memory", 0) / 2**30, 1)})
        finally:
            if probe_file is not None:
                probe_file.unlink(missing_ok=True)
        total = sum(n["cpus"] // self.cpus_per_job for n in self._nodes)
        self.slots = max(1, min(total, self.max_jobs) if self.max_jobs else total)
        res = ray.cluster_resources()
        self._resources = {"CPU": res.get("CPU", 0), "GPU": res.get("GPU", 0),
                           "memory_gb": round(res.get("memory", 0) / 2**30, 1),
                           "object_store_gb": round(res.get("object_store_memory", 0) / 2**30, 2),
                           "nodes": len(nodes)}

    def start(self, data: JobData, run_dir: Path | None) -> None:
        super().start(data, run_dir)
        ray = self._import_ray()
        self._ray = ray
        self._connect(ray)
        try:
            self._check_nodes(ray, run_dir)
            # Workers are reused (a fresh process per job cost ~4.5 s of start and TensorFlow
            # import: scripts/measure_job_overhead.py); a worker that dies is retried once; an
            # exception in the job is not retried.
            self._remote = ray.remote(max_retries=1, retry_exceptions=False)(_task)
            self._data_ref = ray.put(data)  # once; every task reads it from the object store
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ jobs

    def submit(self, job: Job) -> None:
        ref = self._remote.options(num_cpus=self.cpus_per_job, name=job.name).remote(
            job, self._data_ref, self.cpus_per_job)
        self._refs[ref] = job
        self.in_flight[job.key] = job

    def wait(self, timeout: float) -> list[tuple[Job, dict | Failure]]:
        ray = self._ray
        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        done: list[tuple[Job, dict | Failure]] = []
        for ref in ready:
            job = self._refs.pop(ref)
            self.in_flight.pop(job.key, None)
            try:
                done.append((job, ray.get(ref)))
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else e
                done.append((job, Failure(f"{type(cause).__name__}: {str(cause).strip().splitlines()[0][:300]}",
                                          trace=str(e))))
            except ray.exceptions.RayError as e:  # WorkerCrashedError, NodeDiedError, ... after the retry
                first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                done.append((job, Failure(f"its Ray worker died and the retry did too ({type(e).__name__}"
                                          f"{': ' + first if first else ''})", died=True)))
        return done

    def cancel(self, job: Job) -> bool:
        ref = next((r for r, j in self._refs.items() if j.key == job.key), None)
        if ref is None:
            return False
        try:
            self._ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 (finished meanwhile: its result is dropped)
            pass
        del self._refs[ref]
        self.in_flight.pop(job.key, None)
        return True

    def close(self) -> None:
        if not self._connected:
            return
        ray = self._ray
        for ref in list(self._refs):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 (already finished or gone)
                pass
        self._refs.clear()
        self.in_flight.clear()
        ray.shutdown()  # a Ray started for the run stops; a cluster just loses this driver
        self._connected = False

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address or "local (started for this run)",
                "jobs": self.slots, "cpus_per_job": self.cpus_per_job, "ray": self._ray.__version__,
                "nodes": self._nodes, "resources": self._resources}

