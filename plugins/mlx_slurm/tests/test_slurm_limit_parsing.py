"""What the SLURM plugin reads and writes for cluster limits where no cluster here can show it:
``sacctmgr`` output needs accounting (slurmdbd), which the test cluster does not run; the
dependency text is checked on the real cluster by test_slurm_limits.py."""

from __future__ import annotations

import pytest
from mlx_slurm.scheduler import SLURMScheduler, _dependency, max_submit

pytestmark = pytest.mark.slurm


@pytest.mark.parametrize(
    ("output", "cap"),
    [("", 0), ("\n\n", 0), ("500\n", 500), ("\n200\n1000\n", 200), ("50\n\n", 50)],
)
def test_max_submit_is_the_smallest_set_association_limit(output, cap):
    """``sacctmgr -n -P show assoc ... format=MaxSubmit``: one line per association, empty
    where no limit is set."""
    assert max_submit(output) == cap


def test_an_array_is_waited_for_by_its_base_id():
    assert _dependency([]) == []
    assert _dependency(["12_0", "12_1", "12_2"]) == ["--dependency=afterany:12"]
    assert _dependency(["7", "9"]) == ["--dependency=afterany:7:9"]


def test_limits_are_not_negative():
    with pytest.raises(ValueError, match="max_array_tasks"):
        SLURMScheduler(max_array_tasks=-1)
