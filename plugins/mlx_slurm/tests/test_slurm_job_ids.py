"""Job ids read from a (possibly shared, untrusted) run dir reach squeue/scancel only when they
have SLURM's shape. No cluster needed: this checks the plugin's declared pattern."""

from __future__ import annotations

import pytest
from mlx_slurm.scheduler import SLURMScheduler
from mlxpy.scheduling.status import InvalidJobIdError, check_job_id

pytestmark = pytest.mark.slurm


@pytest.mark.parametrize("job_id", ["7", "123456", "12_3", 42])
def test_slurm_job_ids_pass(job_id):
    assert check_job_id(SLURMScheduler, job_id) == str(job_id)


@pytest.mark.parametrize("job_id", ["12_", "12_3_4", "abc", "-1", "12 13", "../1", "12;true", ""])
def test_other_ids_never_reach_slurm(job_id):
    with pytest.raises(InvalidJobIdError):
        check_job_id(SLURMScheduler, job_id)
