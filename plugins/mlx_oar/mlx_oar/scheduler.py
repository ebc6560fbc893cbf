"""OARScheduler: ``#OAR`` job scripts, ``oarsub -S``, array jobs, one batched ``oarstat``,
``oardel``, and the checkpoint signal before the walltime."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from mlxpy import Scheduler
from mlxpy.scheduler import JobState, ScheduledJob, SubmissionError

_JOB_ID = re.compile(r"^OAR_JOB_ID=(-?\d+)\s*$", re.M)


class OARScheduler(Scheduler):
    """Submits to OAR. Sweeps go as one array job (``use_arrays``). With
    ``checkpoint_s > 0`` OAR sends SIGUSR2 that long before the walltime; the run records
    TIMEOUT with its logs and checkpoint saved. OAR 2.5 resubmits only ended jobs
    (``oarsub --resubmit ID``), and the resubmitted job resumes the same run dir."""

    name = "OARScheduler"
    directive_prefix = "#OAR"
    array_index_var = "OAR_ARRAY_INDEX"
    array_index_base = 1
    warning_signals: ClassVar[dict[str, str]] = {"SIGUSR2": "TIMEOUT"}

    def __init__(
        self,
        use_arrays: bool = True,
        checkpoint_s: int = 0,
        **kwargs: Any,  # the job-script settings every scheduler shares (mlxpy.Scheduler)
    ) -> None:
        super().__init__(**kwargs)
        self.use_arrays = use_arrays
        self.checkpoint_s = checkpoint_s

    def directives(self, job: ScheduledJob) -> list[str]:
        out, err = self.output_paths(job)
        lines = [f"-n {job.name}", f"-O {out}", f"-E {err}"]
        if self.checkpoint_s > 0:
            lines += [f"--checkpoint {self.checkpoint_s}", "--signal 12"]
        return lines + list(self.option_cmd)

    def _submit(self, args: list[str], what: str) -> list[str]:
        try:
            out = self.call(args, what)
        except SubmissionError:
            raise
        ids = _JOB_ID.findall(out)
        if not ids or any(int(i) < 0 for i in ids):
            raise SubmissionError(f"{what} failed: {out.strip()}")
        return ids

    def submit(self, script_path: Path) -> str:
        return self._submit(["oarsub", "-S", str(script_path)], "oarsub")[0]

    def max_array_size(self) -> int:
        return 100_000

    def submit_array(self, script_path: Path, count: int, first_job: ScheduledJob) -> list[str]:
        ids = self._submit(
            ["oarsub", "--array", str(count), "-S", str(script_path)], "oarsub --array"
        )
        if len(ids) != count:
            raise SubmissionError(f"oarsub --array {count} returned {len(ids)} job ids")
        return ids

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """One ``oarstat -f -J -j ID -j ID ...``; ``Terminated`` is not success: the exit
        code (a raw wait status in OAR) tells."""
        if not job_ids:
            return {}
        args = ["oarstat", "-f", "-J"]
        for job_id in job_ids:
            args += ["-j", str(job_id)]
        data = json.loads(self.call(args, "oarstat") or "{}")
        found = {}
        for job_id, job in data.items():
            raw = job.get("exit_code")
            code = None if raw in (None, "") else int(raw) >> 8
            events = [str(e.get("type")) for e in job.get("events") or [] if isinstance(e, dict)]
            found[str(job_id)] = JobState(
                job.get("state", "UNKNOWN"),
                code,
                "; ".join(events) or None,
                cancelled="FRAG_JOB_REQUEST" in events,  # oardel
            )
        return found

    def cancel(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            self.call(["oardel", *job_ids], "oardel")

    def current_job(self) -> dict[str, Any]:
        env = os.environ
        info: dict[str, Any] = {}
        if env.get("OAR_JOB_ID"):
            info["job_id"] = env["OAR_JOB_ID"]
        if env.get("OAR_ARRAY_ID"):
            info["array_id"] = env["OAR_ARRAY_ID"]
        nodefile = env.get("OAR_NODEFILE")
        if nodefile and os.path.exists(nodefile):
            with open(nodefile) as handle:
                info["node"] = handle.readline().strip()
        return info
