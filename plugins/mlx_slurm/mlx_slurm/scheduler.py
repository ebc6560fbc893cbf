"""SLURMScheduler: ``#SBATCH`` job scripts, ``sbatch --parsable``, job arrays, one batched
``scontrol show job`` for statuses, ``scancel``, and requeue on the time-limit signal."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import mlxpy
from mlxpy import JobPhase, JobState, RunStatus, ScheduledJob, Scheduler, SubmissionError

_FIELD = re.compile(r"(\w+)=(\S*)")
#: SLURM's job states (``JobState=`` of ``scontrol show job``) and what each means; a state
#: not listed here counts as RUNNING (the controller still holds the job)
PHASES: dict[str, JobPhase] = {
    **dict.fromkeys(
        ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"),
        JobPhase.QUEUED,
    ),
    **dict.fromkeys(
        (
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
            "PREEMPTED",
            "BOOT_FAIL",
            "DEADLINE",
            "REVOKED",
        ),
        JobPhase.DONE,
    ),
}


_NAME = "mlxpy names each job after its run"
_OUTPUT = "mlxpy writes each job's output into its run dir (job.stdout, job.stderr)"
_ARRAY = "mlxpy submits a sweep as one array itself (scheduler.use_arrays)"
#: the ``#SBATCH`` options :meth:`SLURMScheduler.directives` sets itself, and why
RESERVED: dict[str, str] = {
    "--job-name": _NAME,
    "-J": _NAME,
    "--output": _OUTPUT,
    "-o": _OUTPUT,
    "--error": _OUTPUT,
    "-e": _OUTPUT,
    "--open-mode": _OUTPUT,
    "--array": _ARRAY,
    "-a": _ARRAY,
    "--signal": "mlxpy asks for the time-limit signal itself: set "
    "+mlxpy.scheduler.signal_grace_s=<seconds> in mlxpy.yaml or on the python line",
    "--requeue": "set scheduler.requeue: true instead",
    "--no-requeue": "mlxpy sets it unless scheduler.requeue is true",
}


#: the settings laying out a job's tasks, and the ``sbatch`` option each one sets
TASK_OPTIONS: dict[str, str] = {
    "ntasks": "--ntasks",
    "nodes": "--nodes",
    "ntasks_per_node": "--ntasks-per-node",
    "cpus_per_task": "--cpus-per-task",
    "gpus_per_task": "--gpus-per-task",
}
_SHORT_OPTIONS = {"-n": "--ntasks", "-N": "--nodes", "-c": "--cpus-per-task"}
#: the options by which a job asks for several tasks (then run with ``srun``, one per task)
_SEVERAL_TASKS = ("--ntasks", "--nodes", "--ntasks-per-node")
#: how the job's script starts its task when the job has several: one process per task,
#: all of them stopped as soon as one fails (else the others would wait for it for ever)
SRUN = ["srun", "--kill-on-bad-exit=1"]


def task_options(option_cmd: Sequence[str]) -> dict[str, str]:
    """The task-layout options (long names, as in :data:`TASK_OPTIONS`) that raw directives
    set, with their values: ``--ntasks=2``, ``--ntasks 2``, ``-n2`` and ``-n 2`` alike."""
    found: dict[str, str] = {}
    for directive in option_cmd:
        try:
            words = shlex.split(directive)
        except ValueError:
            words = directive.split()
        for number, word in enumerate(words):
            following = words[number + 1] if number + 1 < len(words) else ""
            name, equals, value = word.partition("=")
            if name in TASK_OPTIONS.values():
                found[name] = value if equals else following
            elif word[:2] in _SHORT_OPTIONS and not word.startswith("--"):
                found[_SHORT_OPTIONS[word[:2]]] = word[2:].lstrip("=") or following
    return found


#: ``ArrayTaskId`` of an array's record that names no task (SLURM's NO_VAL)
NO_TASK = 0xFFFFFFFE


def job_state(
    word: str, exit_code: int | None = None, reason: str | None = None, signal: int | None = None
) -> JobState:
    """SLURM's state word as a :class:`JobState`; ``CANCELLED`` is a user's ``scancel``."""
    return JobState(
        state=word,
        phase=PHASES.get(word, JobPhase.RUNNING),
        exit_code=exit_code,
        reason=reason,
        signal=signal,
        cancelled=word == "CANCELLED",
    )


def _expand(task_ids: str) -> list[str]:
    """``0-3,7%2`` -> ['0', '1', '2', '3', '7'] (a pending array's task range)."""
    out: list[str] = []
    for part in task_ids.split("%")[0].split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            out += [str(i) for i in range(int(low), int(high) + 1)]
        elif part:
            out.append(part)
    return out


def _dependency(after: Sequence[str]) -> list[str]:
    """``sbatch`` waits for those jobs to end, however they end. The tasks of an array
    (``<array>_<task>``, every task of it, as a submission passes them) are waited for as
    the whole array, by its base id: one short dependency."""
    jobs = dict.fromkeys(job_id.split("_")[0] for job_id in after)
    return [f"--dependency=afterany:{':'.join(jobs)}"] if jobs else []


def max_submit(sacctmgr_output: str) -> int:
    """The smallest MaxSubmitJobs of ``sacctmgr -n -P ... format=MaxSubmit`` lines (one per
    association; empty: no limit); 0 when none is set."""
    limits = [int(line) for line in sacctmgr_output.split() if line.strip().isdigit()]
    return min(limits) if limits else 0


class SLURMScheduler(Scheduler):
    """Submits to SLURM. Sweeps go as one job array (``use_arrays``), split at the
    cluster's MaxArraySize, optionally throttled (``array_throttle`` per array; a sweep's
    ``max_running`` across its arrays, each array waiting for the one before:
    ``--dependency=afterany``). ``max_submitted`` (else the association's MaxSubmitJobs,
    read with ``sacctmgr`` when the cluster keeps accounts) caps the jobs one may submit.
    SLURM is asked for
    SIGUSR1 ``signal_grace_s`` seconds before the time limit; the run then records TIMEOUT
    and, with ``requeue: true``, puts itself back in the queue to resume in the same dir.

    ``ntasks``, ``nodes``, ``ntasks_per_node``, ``cpus_per_task`` and ``gpus_per_task`` set
    the sbatch options of those names. A job of several tasks (by these settings or by the
    same options in ``option_cmd``) starts its task with ``srun --kill-on-bad-exit=1``, one
    process per task, with ``MASTER_ADDR`` and ``MASTER_PORT`` exported for them."""

    name = "SLURMScheduler"
    directive_prefix = "#SBATCH"
    reserved_directives: ClassVar[dict[str, str]] = RESERVED
    array_index_var = "SLURM_ARRAY_TASK_ID"
    array_index_base = 0
    warning_signals = {"SIGUSR1": RunStatus.TIMEOUT.value}
    #: ``mlxpy status``/``cancel`` pass only ids of this shape to squeue/scancel: a job id, or
    #: an array task's ``<array job>_<task>``
    job_id_pattern = r"[0-9]+(_[0-9]+)?"
    can_throttle_arrays = True
    can_wait_for_jobs = True

    def __init__(
        self,
        use_arrays: bool = True,
        array_throttle: int = 0,
        signal_grace_s: int = 60,
        requeue: bool = False,
        max_submitted: int = 0,
        max_array_tasks: int = 0,
        ntasks: int | None = None,
        nodes: int | None = None,
        ntasks_per_node: int | None = None,
        cpus_per_task: int | None = None,
        gpus_per_task: int | None = None,
        **kwargs: Any,  # the job-script settings every scheduler shares (mlxpy.Scheduler)
    ) -> None:
        super().__init__(**kwargs)
        if min(array_throttle, max_submitted, max_array_tasks) < 0:
            raise ValueError(
                "array_throttle, max_submitted and max_array_tasks must be 0 (no limit) or more"
            )
        given = {"ntasks": ntasks, "nodes": nodes, "ntasks_per_node": ntasks_per_node}
        given |= {"cpus_per_task": cpus_per_task, "gpus_per_task": gpus_per_task}
        self.tasks = {key: value for key, value in given.items() if value is not None}
        raw = task_options(self.option_cmd)
        for key, value in self.tasks.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a whole number of 1 or more, got {value!r}")
            if TASK_OPTIONS[key] in raw:
                raise ValueError(
                    f"{key}={value} and option_cmd's {TASK_OPTIONS[key]}={raw[TASK_OPTIONS[key]]}"
                    f" set the same sbatch option: keep one of them (scheduler.{key} or "
                    "scheduler.option_cmd)"
                )
        counts = {TASK_OPTIONS[key]: str(value) for key, value in self.tasks.items()} | raw
        #: whether each job starts several processes (srun starts one per task)
        self.several_tasks = any(counts.get(option, "1") != "1" for option in _SEVERAL_TASKS)
        # srun does not take sbatch's --cpus-per-task from the job (SLURM 22.05 and later)
        cpus = counts.get("--cpus-per-task")
        self._srun = [*SRUN, *([f"--cpus-per-task={cpus}"] if cpus else [])]
        self.use_arrays = use_arrays
        self.array_throttle = array_throttle
        self.signal_grace_s = signal_grace_s
        self.requeue = requeue
        self.max_submitted = max_submitted
        self.max_array_tasks = max_array_tasks
        self._config: str | None = None

    def directives(self, job: ScheduledJob) -> list[str]:
        out, err = self.output_paths(job)
        lines = [
            f"--job-name={job.name}",
            f"--output={out}",
            f"--error={err}",
            "--open-mode=append",
        ]  # a requeued job adds to its output, never erases it
        if self.signal_grace_s > 0:
            lines.append(f"--signal=B:USR1@{self.signal_grace_s}")
        lines.append("--requeue" if self.requeue else "--no-requeue")
        lines += [f"{TASK_OPTIONS[key]}={value}" for key, value in self.tasks.items()]
        return lines + list(self.option_cmd)

    def task_setup(self, job: ScheduledJob, command: Sequence[str]) -> list[str]:
        """For a job of several tasks: ``MASTER_ADDR`` is the allocation's first node (where
        the batch script runs) and ``MASTER_PORT`` is derived from the job id, unless set."""
        if not self.several_tasks:
            return []
        first_node = 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1'
        return self.rendezvous_exports(first_node, "$SLURM_JOB_ID", command[0])

    def task_launcher(self, job: ScheduledJob) -> list[str]:
        """``srun`` for a job of several tasks: one process per task, each seeing its rank
        in ``SLURM_PROCID``; srun passes the warning signal on to every one."""
        return list(self._srun) if self.several_tasks else []

    def submit(self, script_path: Path, after: Sequence[str] = ()) -> str:
        out = self.call(["sbatch", "--parsable", *_dependency(after), str(script_path)], "sbatch")
        return out.strip().split(";")[0]

    def _controller_config(self) -> str:
        """``scontrol show config``, asked once per scheduler instance."""
        if self._config is None:
            self._config = self.call(["scontrol", "show", "config"], "scontrol show config")
        return self._config

    def max_array_size(self) -> int:
        """The most tasks one array may hold: the controller's MaxArraySize (SLURM's task
        indices stay below it, and arrays are numbered from 0), or ``max_array_tasks`` when
        smaller (a site's own policy)."""
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", self._controller_config(), flags=re.M)
        limit = int(match.group(1)) if match else 1001
        return min(limit, self.max_array_tasks) if self.max_array_tasks else limit

    def submit_array(
        self,
        script_path: Path,
        count: int,
        first_job: ScheduledJob,
        max_running: int = 0,
        after: Sequence[str] = (),
    ) -> list[str]:
        limits = [k for k in (self.array_throttle, max_running) if k > 0]
        spec = f"0-{count - 1}" + (f"%{min(limits)}" if limits else "")
        args = ["sbatch", "--parsable", f"--array={spec}", *_dependency(after), str(script_path)]
        base = self.call(args, "sbatch --array").strip().split(";")[0]
        return [f"{base}_{i}" for i in range(count)]

    def max_submitted_jobs(self) -> int | None:
        """``max_submitted``, or the association's MaxSubmitJobs (``sacctmgr``, only when the
        controller keeps accounts), less this user's jobs in the queue (array tasks count
        one each, as SLURM counts them); None: no known cap."""
        cap = self.max_submitted or self._association_max_submit()
        if not cap:
            return None
        queued = self.call(["squeue", "-h", "-r", "--me", "-o", "%i"], "squeue").split()
        return max(cap - len(queued), 0)

    def _association_max_submit(self) -> int:
        if not re.search(
            r"^AccountingStorageType\s*=\s*accounting_storage/slurmdbd",
            self._controller_config(),
            flags=re.M,
        ):
            return 0
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
        try:
            out = self.call(
                ["sacctmgr", "-n", "-P", "show", "assoc", f"where user={user}", "format=MaxSubmit"],
                "sacctmgr show assoc",
            )
        except SubmissionError:  # accounts unreadable: no known cap
            return 0
        return max_submit(out)

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """One ``scontrol show job -o`` for every job the controller still knows. A pending
        array is one record for its pending tasks; once every pending task is cancelled it
        names no task (``ArrayTaskId`` is SLURM's NO_VAL) and stands for every task of the
        array that has no record of its own."""
        wanted = set(job_ids)
        try:
            out = self.call(["scontrol", "show", "job", "-o"], "scontrol show job")
        except SubmissionError as exc:
            if "Invalid job id" in str(exc) or "No jobs in the system" in str(exc):
                return {}
            raise
        found: dict[str, JobState] = {}
        whole_array: dict[str, JobState] = {}
        for line in out.splitlines():
            fields = dict(_FIELD.findall(line))
            if "JobId" not in fields:
                continue
            exit_code, _, sig = fields.get("ExitCode", "0:0").partition(":")
            state = job_state(
                fields.get("JobState", "UNKNOWN"),
                exit_code=int(exit_code) if exit_code.isdigit() else None,
                reason=None if fields.get("Reason") in (None, "None") else fields["Reason"],
                signal=int(sig) if sig.isdigit() and int(sig) else None,
            )
            names = [fields["JobId"]]
            if "ArrayJobId" in fields:
                tasks = _expand(fields.get("ArrayTaskId", ""))
                if tasks == [str(NO_TASK)]:
                    whole_array[fields["ArrayJobId"]] = state
                names += [f"{fields['ArrayJobId']}_{t}" for t in tasks]
            for name in names:
                if name in wanted:
                    found[name] = state
        for name in wanted - found.keys():
            array, _, task = name.partition("_")
            if task and array in whole_array:
                found[name] = whole_array[array]
        return found

    def cancel(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            self.call(["scancel", *job_ids], "scancel")

    @classmethod
    def task_environment(cls, env: Mapping[str, str]) -> mlxpy.SchedulerTask | None:
        """A process in a SLURM job: the job (``slurm:<cluster>:<job id>``, and ``.<step>``
        inside a job step; an array task has its own job id), its requeues
        (``SLURM_RESTART_COUNT``; a requeued job keeps its id and its steps count from 0
        again), and, inside a step, the task's rank (``SLURM_PROCID`` of
        ``SLURM_STEP_NUM_TASKS``, local ``SLURM_LOCALID``). The batch script is no task: the
        shell of a ``--ntasks=2`` job has SLURM_PROCID=0 and SLURM_NTASKS=2 (measured) but is
        one process, so ranks count only with ``SLURM_STEP_ID``."""
        job = env.get("SLURM_JOB_ID")
        if not job:
            return None
        name = f"slurm:{env.get('SLURM_CLUSTER_NAME', '')}:{job}"
        requeues = _env_count(env, "SLURM_RESTART_COUNT", 0)
        step = env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")
        if not step or "SLURM_PROCID" not in env:
            return mlxpy.SchedulerTask(name, requeues)
        tasks = _env_count(env, "SLURM_NTASKS", 1)
        return mlxpy.SchedulerTask(
            f"{name}.{step}",
            requeues,
            launcher="slurm",
            rank=_env_count(env, "SLURM_PROCID", 0),
            world_size=_env_count(env, "SLURM_STEP_NUM_TASKS", tasks),
            local_rank=_env_count(env, "SLURM_LOCALID", 0),
        )

    def current_job(self) -> dict[str, Any]:
        env = os.environ
        info: dict[str, Any] = {}
        if env.get("SLURM_ARRAY_JOB_ID"):
            info["job_id"] = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID')}"
        elif env.get("SLURM_JOB_ID"):
            info["job_id"] = env["SLURM_JOB_ID"]
        if env.get("SLURMD_NODENAME"):
            info["node"] = env["SLURMD_NODENAME"]
        if env.get("SLURM_RESTART_COUNT"):
            info["restart_count"] = int(env["SLURM_RESTART_COUNT"])
        return info

    def can_requeue_current_job(self) -> bool:
        return bool(os.environ.get("SLURM_JOB_ID"))

    def requeue_current_job(self) -> bool:
        job_id = os.environ.get("SLURM_JOB_ID")
        if not job_id:
            return False
        self.call(["scontrol", "requeue", job_id], "scontrol requeue")
        return True


def _env_count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise mlxpy.DistributedSetupError(
            f"{name}={text!r} in the environment is not a whole number: SLURM sets it; unset "
            "it, or run the task through srun/sbatch unchanged"
        ) from None
