"""How OARScheduler reads OAR's answers, on records as the real OAR 2.5 cluster of
scripts/clusters/oar.sh gave them (the cluster tests cover the same paths end to end; these
pin the cases a cluster does not produce on demand)."""

from __future__ import annotations

import json

import pytest
from mlx_oar.scheduler import (
    OARScheduler,
    _has_reservation,
    _reason,
    _resubmitted_as,
    _was_cancelled,
)

pytestmark = pytest.mark.oar

RESUBMITTED = {
    "state": "Terminated",
    "exit_code": 25344,
    "events": [
        {"type": "SWITCH_INTO_TERMINATE_STATE", "description": "[bipbip 2] Ask to change"},
        {
            "type": "RESUBMIT_JOB_AUTOMATICALLY",
            "description": "Resubmiting job 2 => 3 (type idempotent & exit code = 99 & "
            "duration > 60s)",
        },
    ],
}
SUCCESSOR = {"state": "Running", "exit_code": None, "events": [], "resubmit_job_id": 2}
OUTPUT_ERROR = [
    {"type": "SWITCH_INTO_ERROR_STATE", "description": "[bipbip 15] Ask to change the job state"},
    {
        "type": "OUTPUT_FILES",
        "description": "[bipbip 15] Cannot create .stdout and .stderr files in /var/tmp/probe "
        "on the node localhost",
    },
]


class RecordedOAR(OARScheduler):
    """Answers ``oarstat`` from recorded records instead of running it."""

    def __init__(self, records: dict[str, dict]) -> None:
        super().__init__()
        self.records = records
        self.asked: list[list[str]] = []

    def call(self, args: list[str], what: str) -> str:
        self.calls += 1
        wanted = [args[i + 1] for i, a in enumerate(args) if a == "-j"]
        self.asked.append(wanted)
        return json.dumps({j: self.records[j] for j in wanted if j in self.records})


def test_resubmission_is_followed_in_one_more_call():
    oar = RecordedOAR({"2": RESUBMITTED, "3": SUCCESSOR, "7": SUCCESSOR})
    states = oar.statuses(["2", "7"])
    assert oar.asked == [["2", "7"], ["3"]]
    assert (states["2"].state, states["2"].current_job_id) == ("Running", "3")
    assert (states["7"].state, states["7"].current_job_id) == ("Running", None)


def test_successor_without_record_keeps_the_known_job():
    oar = RecordedOAR({"2": RESUBMITTED})
    state = oar.statuses(["2"])["2"]
    assert (state.state, state.exit_code, state.current_job_id) == ("Terminated", 99, None)


def test_readable_reason_without_routine_events():
    assert _reason(OUTPUT_ERROR) == (
        "OUTPUT_FILES: Cannot create .stdout and .stderr files in /var/tmp/probe on the node "
        "localhost"
    )
    assert _reason(OUTPUT_ERROR[:1]) is None
    assert _resubmitted_as(RESUBMITTED) == "3" and _resubmitted_as(SUCCESSOR) is None
    preempted = {
        "events": [
            {"type": "BESTEFFORT_KILL", "description": "[MetaSched] kill the besteffort job 3"},
            {
                "type": "RESUBMIT_JOB_AUTOMATICALLY",
                "description": "[bipbip 3] the job 3 is a besteffort and idempotent job so we "
                "resubmit it (new id = 5)",
            },
        ]
    }
    assert _resubmitted_as(preempted) == "5"


@pytest.mark.parametrize(
    "types, cancelled",
    [
        (["FRAG_JOB_REQUEST", "SEND_KILL_JOB"], True),  # oardel
        (["FRAG_JOB_REQUEST", "WALLTIME", "SEND_KILL_JOB"], False),  # sarko at the walltime
        (["BESTEFFORT_KILL", "FRAG_JOB_REQUEST", "SEND_KILL_JOB"], False),  # preempted
        (["SWITCH_INTO_TERMINATE_STATE"], False),
    ],
)
def test_cancelled_only_by_oardel(types, cancelled):
    assert _was_cancelled([{"type": t} for t in types]) is cancelled


@pytest.mark.parametrize(
    "option_cmd, reserved",
    [
        (["-l core=1,walltime=2:00:00"], False),
        (["-q default", "-r '2026-12-01 10:00:00'"], True),
        (["--reservation='2026-12-01 10:00:00'"], True),
        (["-t besteffort"], False),
    ],
)
def test_reservation_is_seen_in_option_cmd(option_cmd, reserved):
    assert _has_reservation(option_cmd) is reserved


@pytest.mark.parametrize("job_id, valid", [("7", True), (31, True), ("7_1", False), ("-t", False)])
def test_only_oar_job_ids_reach_oar(job_id, valid):
    from mlx_oar.scheduler import OARScheduler
    from mlxpy.scheduling.status import InvalidJobIdError, check_job_id

    if valid:
        assert check_job_id(OARScheduler, job_id) == str(job_id)
    else:
        with pytest.raises(InvalidJobIdError):
            check_job_id(OARScheduler, job_id)
