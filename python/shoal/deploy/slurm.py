"""SLURMCluster: workers as Slurm jobs, with dask-jobqueue's names.

The scheduler runs in this process (on its threads, as a
:class:`~shoal.LocalCluster`'s does) and listens where the compute nodes can
reach it. Each job runs ``processes`` workers (``shoal worker``) sharing
``cores`` and ``memory``; jobs are submitted with ``sbatch``, known by their
job id, and cancelled with ``scancel`` when their workers retire and when
the cluster closes. The token and TLS reach the jobs through the
environment ``sbatch`` passes on (never the job script or a command line).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
from typing import Any

from .. import _engine
from ..core import security as security_
from ..core.session import Session
from ..core.sizes import parse_bytes
from ..worker.options import pre_spawn_environ
from . import local as local_
from .cluster import HostedScheduler


class SLURMCluster(HostedScheduler):
    """Workers as Slurm jobs, with dask-jobqueue's arguments.

    Parameters
    ----------
    cores
        CPU cores per job (``--cpus-per-task``), shared by its workers.
    memory
        Memory per job (``"4GB"``), shared by its workers as their
        ``memory_limit``.
    processes
        Workers per job (default: about the square root of ``cores``, as
        dask-jobqueue); each gets ``cores // processes`` threads.
    queue
        The partition (``--partition``); Slurm's default if None.
    account
        The account charged (``--account``).
    walltime
        The jobs' time limit (``--time``, default ``"00:30:00"``).
    job_name
        The jobs' name (default ``"shoal-worker"``).
    job_extra_directives
        More ``#SBATCH`` lines, without the prefix (``["--exclusive"]``).
    job_script_prologue
        Shell lines run before the workers start (``["module load
        python"]``).
    log_directory
        Where each job's output goes (``<job_name>-<job id>.out``); with
        None (the default) it is discarded, leaving no files behind.
    python
        The Python on the compute nodes (default: this one's executable).
    n_workers
        Workers to start at once (default 0: call ``scale`` or ``adapt``).
    scheduler_options
        ``host`` (the interface the nodes reach, default: this machine's
        name), ``port`` (default 0: any), ``dashboard_address`` (default
        ``":8787"``; None for none), ``worker_ttl``, ``allowed_failures``.
    security
        A :class:`~shoal.Security` (a new token if it has none; TLS
        certificates read here); ``True`` means ``Security.temporary()``.
    submit_command, cancel_command
        The commands run to submit and cancel jobs (default ``sbatch`` and
        ``scancel``).
    shared_temp_directory
        A directory the compute nodes share with this machine (default: the
        current one, as dask-jobqueue). The workers' credentials (the token,
        and TLS certificates and key) go there in a file only you can read,
        which each job's workers read on their standard input; it is removed
        when the cluster closes. Neither the job script nor the job's
        environment (which Slurm stores) holds a secret.

    Examples
    --------
    >>> cluster = SLURMCluster(cores=8, memory="16GB", queue="normal",
    ...                        walltime="02:00:00")  # doctest: +SKIP
    >>> cluster.scale(10)  # doctest: +SKIP
    >>> print(cluster.job_script())  # doctest: +SKIP

    """

    def __init__(
        self,
        cores: int,
        memory: str | int,
        processes: int | None = None,
        queue: str | None = None,
        account: str | None = None,
        walltime: str | None = "00:30:00",
        job_name: str = "shoal-worker",
        job_extra_directives: list[str] | None = None,
        job_script_prologue: list[str] | None = None,
        log_directory: str | None = None,
        python: str | None = None,
        n_workers: int = 0,
        scheduler_options: dict[str, Any] | None = None,
        security: Any = None,
        submit_command: str = "sbatch",
        cancel_command: str = "scancel",
        shared_temp_directory: str | None = None,
        **kwargs: Any,
    ):
        if kwargs:
            raise TypeError(f"SLURMCluster() got unexpected arguments {sorted(kwargs)}")
        _check_script_values(
            job_name, queue, account, walltime, job_extra_directives, log_directory
        )
        if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
            raise ValueError(f"cores must be a number of cores (1 or more), not {cores!r}")
        self.cores = cores
        self.memory = parse_bytes(memory)
        if processes is None:
            processes = max(1, round(math.sqrt(cores)))
            while cores % processes:
                processes -= 1
        if processes < 1 or processes > cores:
            raise ValueError(f"processes must be between 1 and cores ({cores}), not {processes}")
        self.processes = processes
        self.queue = queue
        self.account = account
        self.walltime = walltime
        self.job_name = job_name
        self.job_extra_directives = list(job_extra_directives or [])
        self.job_script_prologue = list(job_script_prologue or [])
        self.log_directory = None if log_directory is None else os.fspath(log_directory)
        self.python = python or sys.executable
        self.submit_command = shlex.split(submit_command)
        self.cancel_command = shlex.split(cancel_command)
        self.security = security_.cluster_credentials(security)
        self.shared_temp_directory = os.fspath(shared_temp_directory or os.getcwd())
        if not os.path.isdir(self.shared_temp_directory):
            raise ValueError(
                f"shared_temp_directory {self.shared_temp_directory!r} is not a directory"
            )
        #: The credentials file of the jobs' workers (made with the first job script).
        self._credentials_file: str | None = None
        options = dict(scheduler_options or {})
        host = options.pop("host", None) or _this_host()
        port = int(options.pop("port", 0))
        dashboard = local_.dashboard_spec(options.pop("dashboard_address", ":8787"))
        #: Ids of the jobs submitted and not cancelled.
        self.jobs: list[str] = []
        self.status = "starting"
        self._scheduler = _engine.Scheduler(
            _engine.SchedulerConfig(
                host,
                port,
                dashboard,
                token=self.security.token,
                tls=self.security.tls_for("scheduler"),
                **local_.scheduler_options(options),
            )
        )
        security_.remember(self._scheduler.address, self.security)
        try:
            self._monitor = Session(self._scheduler.address, 10.0, "cluster-monitor", self.security)
            if self.log_directory is not None:
                os.makedirs(self.log_directory, exist_ok=True)
            if n_workers:
                self.scale(n_workers)
        except BaseException:
            self.close()
            raise
        self.status = "running"

    # ----- jobs --------------------------------------------------------------

    def job_script(self) -> str:
        """The script each job runs (``$SLURM_JOB_ID`` names its workers).

        Returns
        -------
        str
            A bash script with its ``#SBATCH`` lines.

        """
        out = "/dev/null"
        if self.log_directory is not None:
            out = os.path.join(self.log_directory, f"{self.job_name}-%j.out")
        directives = [
            f"--job-name={self.job_name}",
            f"--output={out}",
            "--ntasks=1",
            f"--cpus-per-task={self.cores}",
            f"--mem={max(1, self.memory // 2**20)}M",
        ]
        if self.queue:
            directives.append(f"--partition={self.queue}")
        if self.account:
            directives.append(f"--account={self.account}")
        if self.walltime:
            directives.append(f"--time={self.walltime}")
        directives += self.job_extra_directives
        worker = [
            self.python,
            "-m",
            "shoal",
            "worker",
            self._scheduler.address,
            "--nthreads",
            str(max(1, self.cores // self.processes)),
            "--memory-limit",
            str(self.memory // self.processes),
            "--credentials-stdin",
        ]
        command = shlex.join(worker)
        credentials = shlex.quote(self._credentials())
        name = f"{self.job_name}-$SLURM_JOB_ID"
        lines = ["#!/usr/bin/env bash", *(f"#SBATCH {d}" for d in directives)]
        lines += self.job_script_prologue
        lines.append(f"for i in $(seq 0 {self.processes - 1}); do")
        lines.append(f'    {command} --name "{name}-$i" < {credentials} &')
        lines.append("done")
        lines.append("wait")
        return "\n".join(lines) + "\n"

    def _credentials(self) -> str:
        """The path of the file holding the workers' credentials (one line,
        see ``security.credentials_line``), made on first use, readable by
        this user alone.
        """
        if self._credentials_file is None:
            line, _ = security_.worker_stdin(self.security)
            where = self.shared_temp_directory
            fd, path = tempfile.mkstemp(prefix=".shoal-credentials-", dir=where)
            with os.fdopen(fd, "w") as f:  # mkstemp makes it 0600
                f.write(line + "\n")
            self._credentials_file = path
        return self._credentials_file

    def _start_workers(self, n: int) -> None:
        script = self.job_script()
        # sbatch passes its environment on to the job (`--export=ALL`):
        # the credentials are not in it (see `_credentials`).
        env = {**os.environ, **pre_spawn_environ()}
        for _ in range(math.ceil(n / self.processes)):
            try:
                done = subprocess.run(
                    [*self.submit_command, "--parsable"],
                    input=script,
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=60,
                )
            except FileNotFoundError:
                raise RuntimeError(
                    f"{self.submit_command[0]} not found: SLURMCluster submits jobs with Slurm's "
                    "commands, which must be on this machine's PATH (or give submit_command=)"
                ) from None
            if done.returncode != 0:
                raise RuntimeError(
                    f"{shlex.join(self.submit_command)} failed: {done.stderr.strip()}"
                )
            self.jobs.append(done.stdout.strip().split(";")[0])

    def _prepare_stop(self, workers: list[Any]) -> Any:
        return workers

    def _stop_workers(self, token: Any, retired: list[str]) -> None:
        gone = {_engine.strip_scheme(a) for a in retired}
        names = [w.info.name for w in token if _engine.strip_scheme(w.info.address) in gone]
        left = {w.name for w in self._monitor.workers()} if self._monitor else set()
        left -= set(names)
        done = []
        for job in list(self.jobs):
            prefix = f"{self.job_name}-{job}-"
            if any(n.startswith(prefix) for n in names) and not any(
                n.startswith(prefix) for n in left
            ):
                done.append(job)
        self._cancel(done)

    def _cancel(self, jobs: list[str], timeout: float = 60.0) -> None:
        if not jobs:
            return
        command = [*self.cancel_command, *jobs]
        subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        self.jobs = [j for j in self.jobs if j not in jobs]

    def _scale_to(self, n: int) -> None:
        # Jobs start whole: count workers in jobs' worth.
        super()._scale_to(math.ceil(n / self.processes) * self.processes)

    # ----- what users see ----------------------------------------------------

    def _cluster_logs(self) -> str | None:
        """The jobs' output files (with ``log_directory``), one after the
        other, each under a line naming its job.
        """
        if self.log_directory is None:
            return None
        parts = []
        prefix = f"{self.job_name}-"
        for name in sorted(os.listdir(self.log_directory)):
            if name.startswith(prefix) and name.endswith(".out"):
                with open(os.path.join(self.log_directory, name), errors="replace") as f:
                    parts.append(f"== job {name[len(prefix) : -len('.out')]}\n{f.read()}")
        return "\n".join(parts)

    def close(self, timeout: float | None = None) -> None:
        """Cancel every job (waiting up to ``timeout`` seconds, default 60,
        for ``scancel``) and stop the scheduler.
        """
        if self.status == "closed":
            return
        self.status = "closed"
        self.stop_adapting()
        self._cancel(list(self.jobs), 60.0 if timeout is None else float(timeout))
        if self._monitor is not None:
            self._monitor.close()
        self._scheduler.stop()
        security_.forget(self.scheduler_address)
        if self._credentials_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._credentials_file)
            self._credentials_file = None


def _this_host() -> str:
    """The address compute nodes most likely reach this machine at."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


#: What a job name may hold: it is written into the job script's #SBATCH
#: lines, its output file's name and a quoted shell word.
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_script_values(
    job_name: Any,
    queue: Any,
    account: Any,
    walltime: Any,
    directives: Any,
    log_directory: Any,
) -> None:
    """Refuse values that would change the job script's meaning: each goes
    into an ``#SBATCH`` line (a line break would start a shell line), and the
    job name into a shell word too.

    Raises
    ------
    ValueError
        Naming the value and what it may hold.

    """
    if not isinstance(job_name, str) or not _JOB_NAME.fullmatch(job_name):
        raise ValueError(
            f"job_name must be letters, digits, '.', '_' or '-' (starting with a letter "
            f"or digit), not {job_name!r}"
        )
    if isinstance(walltime, int) and not isinstance(walltime, bool):
        walltime = str(walltime)  # minutes, as Slurm's --time takes them
    single = {"queue": queue, "account": account, "walltime": walltime}
    single |= {f"job_extra_directives[{i}]": d for i, d in enumerate(directives or [])}
    if log_directory is not None:
        single["log_directory"] = os.fspath(log_directory)
    for name, value in single.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, not {value!r}")
        if any(c in value for c in "\n\r\0"):
            raise ValueError(f"{name} must be one line (it becomes an #SBATCH line), not {value!r}")
