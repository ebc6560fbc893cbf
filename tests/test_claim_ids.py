"""Claiming a new run id: O(1) with the parent's ``.next_id`` hint, and still one dir per
claim with concurrent claimers, claimers that ignore the hint, and dirs made or deleted by
hand."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from mlxpy.rundir import claim
from mlxpy.rundir.layout import NEXT_ID_FILE


def _claims(parent: str, count: int, use_hint: bool, out) -> None:
    ids = []
    for _ in range(count):
        if use_hint:
            ids.append(claim.claim_new(Path(parent))[0])
        else:  # a claimer that never sees this machine's lock: lists, then mkdir
            ids.append(
                claim._claim_from(
                    Path(parent), 1 + max(claim.run_ids(Path(parent)), default=0), 10**9
                )[0]
            )
    out.put(ids)


def _run_claimers(parent: Path, specs: list[tuple[int, bool]]) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claims, args=(str(parent), n, hint, out)) for n, hint in specs]
    for proc in procs:
        proc.start()
    ids = [i for _ in procs for i in out.get(timeout=120)]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return ids


def test_a_fresh_dir_gives_1_to_n_and_keeps_the_hint(tmp_path):
    ids = [claim.claim_new(tmp_path)[0] for _ in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    assert (tmp_path / NEXT_ID_FILE).read_text().strip() == "6"
    assert sorted(claim.run_ids(tmp_path)) == ids


def test_the_hint_is_used_without_listing_the_parent(tmp_path):
    claim.claim_new(tmp_path)
    claim.claim_new(tmp_path)
    (tmp_path / "100").mkdir()  # made by hand: a listing would go on from 101
    assert claim.claim_new(tmp_path)[0] == 3  # the hint's id: the parent was not listed
    (tmp_path / "4").mkdir()  # in the hint's way: one more mkdir, no listing
    assert claim.claim_new(tmp_path)[0] == 5


def test_runs_deleted_by_hand_give_their_ids_again_as_before(tmp_path):
    for _ in range(3):
        claim.claim_new(tmp_path)
    os.rmdir(tmp_path / "3")  # the last run deleted: the hint's predecessor is gone
    assert claim.claim_new(tmp_path)[0] == 3  # max + 1, as a listing gives
    for name in ("1", "2", "3"):
        os.rmdir(tmp_path / name)
    assert claim.claim_new(tmp_path)[0] == 1  # every run deleted: the ids start again


def test_a_bad_hint_is_not_trusted(tmp_path):
    (tmp_path / "7").mkdir()
    for text in ("", "garbage", "-3", "00012", "9" * 30, "\xff"):
        (tmp_path / NEXT_ID_FILE).write_text(text)
        log_id, path = claim.claim_new(tmp_path)
        assert path.is_dir() and log_id == max(claim.run_ids(tmp_path))
    (tmp_path / NEXT_ID_FILE).unlink()
    os.symlink(tmp_path / "elsewhere", tmp_path / NEXT_ID_FILE)  # never followed
    log_id, _ = claim.claim_new(tmp_path)
    assert log_id == 1 + sorted(claim.run_ids(tmp_path))[-2]
    assert not (tmp_path / "elsewhere").exists()


def test_a_stale_hint_far_behind_costs_one_listing(tmp_path):
    for name in range(1, 201):  # runs an older mlxpy made, which kept no hint
        (tmp_path / str(name)).mkdir()
    (tmp_path / NEXT_ID_FILE).write_text("2\n")
    assert claim.claim_new(tmp_path)[0] == 201  # past the walk's limit: listed once
    assert (tmp_path / NEXT_ID_FILE).read_text().strip() == "202"


def test_concurrent_claimers_get_distinct_dense_ids(tmp_path):
    ids = _run_claimers(tmp_path, [(40, True)] * 6)
    assert sorted(ids) == list(range(1, 241))  # the flock: no holes, no collision


def test_claimers_that_ignore_the_hint_never_share_a_dir(tmp_path):
    # another machine on a shared dir (its flock not shared), or an older mlxpy: mkdir
    # stays the arbiter
    ids = _run_claimers(tmp_path, [(40, True), (40, False), (40, True), (40, False)])
    assert len(set(ids)) == len(ids) == 160
    assert sorted(ids) == sorted(claim.run_ids(tmp_path))
