"""The ``mlxpy`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mlxpy import __version__
from mlxpy.rundir.location import DEFAULT_PARENT_LOG_DIR, resolve_parent_log_dir


def _plugins(args: argparse.Namespace) -> int:
    from mlxpy.plugins import get_plugins

    rows = get_plugins().describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        dist = f"{row['distribution']} {row['version']}" if row["distribution"] else "(in-process)"
        print(f"{row['name']}  [{dist}]  {row['status']}")
        if row["provides"]:
            print(f"    provides: {', '.join(row['provides'])}")
        if row["hooks"]:
            print(f"    hooks:    {', '.join(row['hooks'])}")
    return 0


def _open_reader(parent: str) -> Any:
    from mlxpy.reading.reader import Reader

    def progress(done: int, total: int) -> None:
        if total >= 1000:
            end = "\n" if done == total else ""
            print(f"\rindexing runs: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return Reader(parent, progress=progress)


def _select_columns(runs: Any, spec: str | None) -> list[str]:
    import fnmatch

    from mlxpy.errors import MlxpyError
    from mlxpy.rundir.metrics import NOT_RESULTS_LAST

    if spec:
        wanted = [c.strip() for c in spec.split(",") if c.strip()]
        columns = []
        for pattern in wanted:
            matches = [c for c in runs.columns if fnmatch.fnmatchcase(c, pattern)]
            if not matches and fnmatch.fnmatchcase(runs.index.name, pattern):
                continue  # log_id, the index, is always shown
            if not matches:
                raise MlxpyError(f"no column matches {pattern!r}")
            columns += [c for c in matches if c not in columns]
        return columns
    if runs.empty:
        return ["info.status"]
    metric_last = [
        c for c in runs.columns if c.endswith(".last") and not c.endswith(NOT_RESULTS_LAST)
    ]
    return ["info.status", *runs.mlxpy.varying_config(), *metric_last]


def _emit(frame: Any, fmt: str) -> None:
    if fmt == "csv":
        print(frame.to_csv(), end="")
    elif fmt == "json":
        print(
            frame.reset_index().to_json(
                orient="records", indent=1, date_format="iso", default_handler=str
            )
        )
    else:
        import pandas as pd

        with pd.option_context(
            "display.max_rows", None, "display.max_columns", None, "display.width", 200
        ):
            print(frame.to_string() if not frame.empty else "(no runs)")


def _setup_error(exc: Exception) -> int:
    """One ``mlxpy: error:`` line (a bad query says so), exit status 2: every command's
    :class:`~mlxpy.errors.MlxpyError` ends here (:func:`main`)."""
    from mlxpy.reading.query import QueryError

    what = "bad query: " if isinstance(exc, QueryError) else ""
    print(f"mlxpy: error: {what}{exc}", file=sys.stderr)
    return 2


def _runs(args: argparse.Namespace) -> int:
    runs = _open_reader(args.parent_log_dir).filter(args.query or "")
    columns = _select_columns(runs, args.columns)
    if args.group_by:
        keys = [k.strip() for k in args.group_by.split(",")]
        for key in keys:
            if key not in runs.columns:
                print(f"mlxpy: error: no column {key!r} to group by", file=sys.stderr)
                return 2
        values = [c for c in columns if c not in keys]
        numeric = [c for c in values if c in runs and runs[c].dtype.kind in "iufb"]
        table = runs.groupby(keys, dropna=False)[numeric].agg(["mean", "std"])
        table.columns = [f"{a}.{b}" for a, b in table.columns]
        table.insert(0, "runs", runs.groupby(keys, dropna=False).size())
        _emit(table, args.format)
    else:
        _emit(runs[columns], args.format)
    return 0


def _show(args: argparse.Namespace) -> int:
    import yaml

    from mlxpy.reading.index import read_run
    from mlxpy.rundir.layout import RunDir, is_run_id

    parent = Path(args.parent_log_dir)
    run_dir = parent / str(args.log_id)
    run = RunDir(run_dir)
    if not parent.is_dir():
        print(f"mlxpy: error: no log directory at {parent.resolve()}", file=sys.stderr)
        return 2
    if not is_run_id(str(args.log_id)) or not run_dir.is_dir():
        print(f"mlxpy: error: no run {args.log_id} in {args.parent_log_dir}", file=sys.stderr)
        return 2
    if run_dir.is_symlink():  # as the Reader: a link in a shared logs dir is not followed
        print(f"mlxpy: error: {run_dir} is a symbolic link, not a run dir", file=sys.stderr)
        return 2
    try:
        row = read_run(str(run_dir))
    except (OSError, ValueError) as exc:  # unreadable or newer-format run
        print(f"mlxpy: error: cannot read run {args.log_id}: {exc}", file=sys.stderr)
        return 2
    from mlxpy.rundir.tags import TAGS_COLUMN, read_notes

    tags = row.pop(TAGS_COLUMN, [])
    sections: dict[str, dict] = {"config": {}, "info": {}, "metrics": {}}
    for key, value in row.items():
        head, _, rest = key.partition(".")
        sections[head if head in ("config", "info") else "metrics"][
            rest if head in ("config", "info") else key
        ] = value
    for title, values in sections.items():
        print(f"# {title}")
        print(yaml.safe_dump(values, sort_keys=False, default_flow_style=False).rstrip())
    artifacts = (
        sorted(str(p.relative_to(run.artifacts)) for p in run.artifacts.rglob("*") if p.is_file())
        if run.artifacts.is_dir()
        else []
    )
    checkpoints = (
        sorted(p.name for p in run.checkpoints.glob("*")) if run.checkpoints.is_dir() else []
    )
    print("# tags")
    print(", ".join(tags) or "(none)")
    print("# notes")
    print(read_notes(run.root).rstrip() or "(none)")
    print("# artifacts")
    print("\n".join(artifacts) or "(none)")
    print("# checkpoints")
    print("\n".join(checkpoints) or "(none)")
    print("# report")
    print(_report_command(parent.resolve(), row.get("info.sweep_id")))
    return 0


def _report_command(parent: Path, sweep_id: Any) -> str:
    """The ``mlxpy report`` command of a run's sweep (or of every run beside it)."""
    import shlex

    command = f"mlxpy report {shlex.quote(str(parent))}"
    if isinstance(sweep_id, str) and sweep_id:
        command += " -q " + shlex.quote(f'info.sweep_id == "{sweep_id}"')
    return command


def _mlxpy_warnings() -> Any:
    """Record warnings, for :func:`_print_warnings` (mlxpy's own as one line each)."""
    import warnings

    return warnings.catch_warnings(record=True)


def _print_warnings(caught: list[Any]) -> None:
    import warnings

    from mlxpy.errors import MlxpyWarning

    for w in caught:
        if issubclass(w.category, MlxpyWarning):
            print(f"mlxpy: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _status(args: argparse.Namespace) -> int:
    import pandas as pd

    from mlxpy.scheduling import status as job_status

    with _mlxpy_warnings() as caught:
        try:
            rows = job_status.collect(args.parent_log_dir, args.query or "")
        finally:
            _print_warnings(caught)
    frame = pd.DataFrame(
        rows,
        columns=[
            "log_id",
            "job_id",
            "run_status",
            "scheduler_state",
            "phase",
            "exit_code",
            "status",
            "reason",
        ],
    ).set_index("log_id")
    _emit(frame, args.format)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from mlxpy.scheduling import status as job_status

    with _mlxpy_warnings() as caught:
        try:
            done = job_status.cancel(args.parent_log_dir, args.log_ids)
        finally:
            _print_warnings(caught)
    for log_id, job_id in done:
        print(f"cancelled run {log_id} (job {job_id})")
    return 0


def _plot(args: argparse.Namespace) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no window
        from mlxpy.reading.plotting import figure_bytes, html_report

        runs = _open_reader(args.parent_log_dir).filter(args.query or "")
        by = [k.strip() for k in args.by.split(",")] if args.by else []
        figures = {
            m: runs.mlxpy.plot(m, by=by, over=args.over, logx=args.logx, logy=args.logy)
            for m in args.metric
        }
    except (ValueError, KeyError) as exc:
        print(f"mlxpy: error: {exc}", file=sys.stderr)
        return 2
    except ImportError:
        print("mlxpy: error: plotting needs matplotlib: pip install 'mlxpy[plot]'", file=sys.stderr)
        return 2
    if args.output:
        out = Path(args.output)
        fmt = out.suffix.lstrip(".").lower()
        if fmt not in ("png", "svg", "pdf"):
            print("mlxpy: error: -o must end in .png, .svg or .pdf", file=sys.stderr)
            return 2
        for number, (metric, fig) in enumerate(figures.items()):
            target = out if number == 0 else out.with_name(f"{out.stem}-{metric}{out.suffix}")
            target.write_bytes(figure_bytes(fig, fmt))
            print(f"wrote {target}")
    if args.html:
        Path(args.html).write_text(html_report(runs, figures, title=args.title))
        print(f"wrote {args.html}")
    return 0


def _report(args: argparse.Namespace) -> int:
    """``mlxpy report``: one self-contained, interactive HTML file of the runs."""
    from mlxpy.explorer.page import render_report
    from mlxpy.explorer.payload import build_payload

    if args.points is not None and args.points < 2:
        print(f"mlxpy: error: --points must be at least 2, got {args.points}", file=sys.stderr)
        return 2
    reader = _open_reader(args.parent_log_dir)
    try:
        runs = reader.filter(args.query or "")
        metrics = (
            [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
        )
        title = args.title or f"{len(runs)} runs in {reader.parent_log_dir.name}"
        payload = build_payload(reader, runs, metrics=metrics, points=args.points, title=title)
    finally:
        reader.close()
    out = Path(args.output)
    try:
        out.write_text(render_report(payload, title), encoding="utf-8")
    except OSError as exc:
        print(f"mlxpy: error: cannot write the report {out}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({len(runs)} runs, {len(payload['curves'])} metrics)")
    return 0


def _ui(args: argparse.Namespace) -> int:
    from mlxpy.explorer.server import serve

    if args.points is not None and args.points < 2:
        print("mlxpy: error: --points must be at least 2", file=sys.stderr)
        return 2
    if not args.interval > 0:
        print("mlxpy: error: --interval must be a number of seconds above 0", file=sys.stderr)
        return 2
    return serve(
        args.parent_log_dir,
        query=args.query or "",
        host=args.host,
        port=args.port,
        points=args.points,
        interval=args.interval,
    )


def _sub(args: argparse.Namespace) -> int:
    from mlxpy.scheduling.script_import import submit

    return submit(args.script, args.dry_run)


# -- one run: compare, tag, archive, tail, rerun ----------------------------------------------
def _run_dirs(parent: str, log_ids: list[str]) -> list[Any]:
    """The run dirs named, each checked (an unknown id or a link: an MlxpyError, exit 2)."""
    from mlxpy.rundir.archive import run_dir

    return [run_dir(Path(parent), str(log_id)) for log_id in log_ids]


def _diff(args: argparse.Namespace) -> int:
    from mlxpy.errors import MlxpyError
    from mlxpy.reading.diff import compare, text_table

    if len(set(args.log_ids)) < 2:
        raise MlxpyError("mlxpy diff compares two runs or more: mlxpy diff 3 4 [5 ...]")
    runs = _run_dirs(args.parent_log_dir, args.log_ids)
    try:
        result = compare([run.root for run in runs])
    except (OSError, ValueError) as exc:
        raise MlxpyError(f"cannot read a run: {exc}") from None
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(text_table(result))
    return 0


def _tag(args: argparse.Namespace) -> int:
    from mlxpy.errors import MlxpyError
    from mlxpy.rundir.tags import read_tags, update_tags

    ids = [item for item in args.items if item[:1] not in "+-"]
    add = [item[1:] for item in args.items if item.startswith("+")]
    remove = [item[1:] for item in args.items if item.startswith("-")]
    if not ids:
        raise MlxpyError("name the runs to tag: mlxpy tag 3 4 +good -bad")
    runs = _run_dirs(args.parent_log_dir, ids)
    for log_id, run in zip(ids, runs, strict=True):
        tags = update_tags(run.root, add, remove) if add or remove else read_tags(run.root)
        print(f"run {log_id}: {', '.join(tags) if tags else '(no tags)'}")
    return 0


def _note(args: argparse.Namespace) -> int:
    from mlxpy.rundir.info import now_iso
    from mlxpy.rundir.tags import append_note, read_notes

    (run,) = _run_dirs(args.parent_log_dir, [args.log_id])
    if args.text is None:
        print(read_notes(run.root).rstrip() or f"(no notes for run {args.log_id})")
        return 0
    append_note(run.root, args.text, now_iso())
    print(f"noted run {args.log_id} ({run.notes})")
    return 0


def _archive(args: argparse.Namespace) -> int:
    from mlxpy.rundir.archive import archive_run

    _run_dirs(args.parent_log_dir, args.log_ids)  # every id checked before any is moved
    for log_id in args.log_ids:
        target = archive_run(Path(args.parent_log_dir), log_id, force=args.force)
        print(f"archived run {log_id} to {target} (mlxpy restore {target.name} brings it back)")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from mlxpy.rundir.archive import archived_runs, restore_run

    if not args.names:
        archived = archived_runs(Path(args.parent_log_dir))
        for item in archived:
            print(item.name)
        if not archived:
            print(f"(no archived runs in {args.parent_log_dir})")
        return 0
    for name in args.names:
        found, target = restore_run(Path(args.parent_log_dir), name)
        print(f"restored {found.name} as run {found.log_id} ({target})")
    return 0


def _rm(args: argparse.Namespace) -> int:
    from mlxpy.errors import MlxpyError
    from mlxpy.rundir.archive import live_reason, remove_run
    from mlxpy.rundir.info import read_info

    runs = _run_dirs(args.parent_log_dir, args.log_ids)
    for log_id, run in zip(args.log_ids, runs, strict=True):
        reason = live_reason(run)
        if reason is not None and (not args.force or "running" in reason):
            raise MlxpyError(f"run {log_id} is not removed: {reason}")
    if not args.yes:
        listing = ", ".join(
            f"{i} ({(read_info(r.root) or {}).get('status', '?')})"
            for i, r in zip(args.log_ids, runs, strict=True)
        )
        print(
            f"delete run(s) {listing} of {args.parent_log_dir} for good? "
            "(mlxpy archive moves them aside instead) [y/N] ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        answer = sys.stdin.readline().strip().lower() if sys.stdin is not None else ""
        if answer not in ("y", "yes"):
            print("nothing removed", file=sys.stderr)
            return 1
    for log_id in args.log_ids:
        remove_run(Path(args.parent_log_dir), log_id, force=args.force)
        print(f"removed run {log_id} from {args.parent_log_dir}")
    return 0


def _tail(args: argparse.Namespace) -> int:
    from mlxpy.rundir.outputs import follow, output_files, read_tail

    (run,) = _run_dirs(args.parent_log_dir, [args.log_id])
    streams = ("stdout",) if args.stdout else ("stderr",) if args.stderr else ("stdout", "stderr")
    out = sys.stdout.buffer
    files = output_files(run, streams)
    headers = len(files) > 1 or args.follow  # as tail: ==> name <== when there are several
    last: list[Path] = []

    def write(path: Path, data: bytes) -> None:
        if headers and last != [path]:
            out.write(f"{chr(10) if last else ''}==> {path.name} <==\n".encode())
            last[:] = [path]
        out.write(data)
        out.flush()

    offsets: dict[Path, int] = {}
    for path in files:
        data, offsets[path] = read_tail(path, run.root, args.lines)
        write(path, data)
    if not files and not args.follow:
        print(
            f"(run {args.log_id} has no captured output: set logger.log_streams_to_file: "
            "true, or submit it to a scheduler)",
            file=sys.stderr,
        )
    if args.follow:
        try:
            follow(run, offsets, streams, write)
        except KeyboardInterrupt:
            return 130
    return 0


def _rerun(args: argparse.Namespace) -> int:
    import shlex
    import subprocess

    from mlxpy.errors import MlxpyError
    from mlxpy.launching.rerun import build
    from mlxpy.rundir.info import read_info

    (run,) = _run_dirs(args.parent_log_dir, [args.log_id])
    info = read_info(run.root)
    if info is None:
        raise MlxpyError(f"run {args.log_id} has no readable {run.info.name}; it cannot be re-run")
    if args.resume:
        from mlxpy.rundir.archive import live_reason

        reason = live_reason(run)
        if reason is not None:
            raise MlxpyError(f"run {args.log_id} cannot be resumed now: {reason}")
    command = build(run.root, info, resume=args.resume)
    how = "resuming" if args.resume else "re-running"
    where = f" from the snapshot {command.snapshot}" if command.snapshot else ""
    print(
        f"[mlxpy] {how} run {args.log_id}{where}, in {command.cwd}: {shlex.join(command.argv)}",
        file=sys.stderr,
        flush=True,
    )
    # a list of arguments, never a shell string: nothing in the run dir is interpreted
    result = subprocess.run(command.argv, cwd=command.cwd, env={**os.environ, **command.env})
    return result.returncode


# -- sweeps ---------------------------------------------------------------------------------
def _sweep_rows(parent: Path) -> list[dict[str, Any]]:
    from mlxpy.sweeping.manifest import SweepError, SweepManifest, list_sweeps
    from mlxpy.sweeping.progress import counts_text
    from mlxpy.sweeping.resume import counts, point_states

    rows: list[dict[str, Any]] = []
    for sweep_id in list_sweeps(parent):
        try:
            manifest = SweepManifest.read(parent, sweep_id)
            states = point_states(parent, manifest)
        except SweepError as exc:  # one damaged record does not hide the others
            rows.append({"sweep_id": sweep_id, "created": "", "points": None, "error": str(exc)})
            continue
        tally = counts(states)
        rows.append(
            {
                "sweep_id": sweep_id,
                "created": manifest.created,
                "points": len(states),
                "counts": dict(tally),
                "status": counts_text(tally),
                "scheduler": (manifest.scheduler or {}).get("name"),
                "adaptive": manifest.adaptive,
                "command": " ".join(manifest.argv),
            }
        )
    return rows


def _sweeps(args: argparse.Namespace) -> int:
    parent = Path(args.parent_log_dir)
    if not parent.is_dir():
        print(f"mlxpy: error: no log directory at {parent}", file=sys.stderr)
        return 2
    rows = _sweep_rows(parent)
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"(no sweeps in {parent})")
        return 0
    for row in rows:
        if "error" in row:
            print(f"{row['sweep_id']}  (unreadable: {row['error']})")
            continue
        where = f"  [{row['scheduler']}]" if row["scheduler"] else ""
        kind = "  adaptive" if row["adaptive"] else ""
        print(f"{row['sweep_id']}  {row['points']} points: {row['status']}{where}{kind}")
        print(f"    {row['command']}")
    return 0


def _best(parent: Path, manifest: Any) -> Any:
    """The best trial of an adaptive sweep, from its sweeper (a registered one only: the
    manifest is data from a shared dir, a dotted class path in it is never imported), opened
    read-only: looking at a sweep, maybe another user's, writes nothing in its dir."""
    from mlxpy.plugins import get_plugins
    from mlxpy.plugins.component import build_component
    from mlxpy.sweeping.manifest import sweep_dir
    from mlxpy.sweeping.space import SearchSpace

    name = manifest.sweeper.get("name")
    registry = get_plugins()
    if name not in registry.available("sweeper"):
        return f"(sweeper {name!r} is not installed here)"
    try:
        cls = registry.resolve("sweeper", name, where="the sweep manifest")
        settings = dict(manifest.sweeper.get("settings") or {})
        sweeper = build_component(cls, "sweep", settings, lambda key: "the sweep manifest")
        sweeper.open(sweep_dir(parent, manifest.sweep_id), SearchSpace([], []), read_only=True)
        return sweeper.best()
    except Exception as exc:  # a study that cannot be read still leaves the points shown
        return f"(unavailable: {type(exc).__name__}: {exc})"


def _sweep_status(args: argparse.Namespace) -> int:
    from mlxpy.sweeping.manifest import SweepManifest
    from mlxpy.sweeping.progress import counts_text
    from mlxpy.sweeping.resume import counts, point_states

    parent = Path(args.parent_log_dir)
    manifest = SweepManifest.read(parent, args.sweep_id)
    states = point_states(parent, manifest)
    best = _best(parent, manifest) if manifest.adaptive else None
    if args.format == "json":
        points = [
            {
                "index": s.index,
                "overrides": s.overrides,
                "log_id": s.log_id,
                "status": s.status,
                "job_id": s.job_id,
            }
            for s in states
        ]
        print(json.dumps({"sweep_id": manifest.sweep_id, "points": points, "best": best}))
        return 0
    print(f"sweep {manifest.sweep_id}: {len(states)} points: {counts_text(counts(states))}")
    print(f"command: {' '.join(manifest.argv)}  (in {manifest.cwd})")
    rows = [("point", "log_id", "status", "job_id", "overrides")]
    rows += [
        (
            str(s.index),
            "-" if s.log_id is None else str(s.log_id),
            s.status,
            s.job_id or "-",
            " ".join(s.overrides),
        )
        for s in states
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(f"{r[i]:<{widths[i]}}" for i in range(4)) + "  " + r[4])
    if manifest.adaptive:
        print(f"best: {json.dumps(best, default=str)}")
    return 0


def _sweep_resume(args: argparse.Namespace) -> int:
    """Run the sweep's recorded command again with ``+mlxpy.sweep.resume=<id>``: a resume is
    exactly a relaunch. Only a manifest the user wrote is run (a shared log dir may hold
    other users' records)."""
    import os
    import shlex
    import subprocess

    from mlxpy.sweeping.manifest import MANIFEST_FILE, SweepError, SweepManifest, sweep_dir
    from mlxpy.sweeping.resume import parse_only, sweep_overrides

    parent = Path(args.parent_log_dir)
    manifest = SweepManifest.read(parent, args.sweep_id)
    path = sweep_dir(parent, args.sweep_id) / MANIFEST_FILE
    owner = os.lstat(path).st_uid
    if owner != os.getuid():
        raise SweepError(
            f"{path} was written by another user (uid {owner}); mlxpy sweep resume runs only "
            "commands you recorded yourself. Check its command and run it with "
            f"+mlxpy.sweep.resume={args.sweep_id} if you trust it"
        )
    only = sorted(parse_only(args.only.split(","))) if args.only else []
    if not manifest.argv or not os.path.isdir(manifest.cwd):
        raise SweepError(
            f"sweep {args.sweep_id} cannot be relaunched: its recorded command is empty or its "
            f"directory {manifest.cwd!r} is gone"
        )
    kept = sweep_overrides(manifest.argv)
    command = [sys.executable, manifest.argv[0], *kept, f"+mlxpy.sweep.resume={args.sweep_id}"]
    if only:
        command.append(f"+mlxpy.sweep.only=[{','.join(s.lower() for s in only)}]")
    print(f"[mlxpy] in {manifest.cwd}: {shlex.join(command)}", file=sys.stderr, flush=True)
    return subprocess.run(command, cwd=manifest.cwd).returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlxpy", description="mlxpy experiment manager")
    parser.add_argument("--version", action="version", version=f"mlxpy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    plugins = sub.add_parser("plugins", help="list installed plugins and what they provide")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=_plugins)

    # a relative log dir is relative to the project dir, as in the task (mlxpy.rundir.location)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--project-dir",
        help="the project a relative log dir belongs to, as in the task (default: the current "
        "directory): mlxpy runs ./logs --project-dir path/to/project",
    )

    runs = sub.add_parser("runs", help="list, filter and group runs", parents=[where])
    runs.add_argument("parent_log_dir", nargs="?", default=DEFAULT_PARENT_LOG_DIR)
    runs.add_argument("-q", "--query", help="e.g. \"info.status == 'COMPLETE' & config.lr < 1e-2\"")
    runs.add_argument("-c", "--columns", help="comma-separated columns, wildcards allowed")
    runs.add_argument("--group-by", help="comma-separated keys: mean and std per group")
    runs.add_argument("--format", choices=["table", "csv", "json"], default="table")
    runs.set_defaults(func=_runs)

    show = sub.add_parser(
        "show", help="one run: config, info, metric summaries, artifacts", parents=[where]
    )
    show.add_argument("log_id")
    show.add_argument("parent_log_dir", nargs="?", default=DEFAULT_PARENT_LOG_DIR)
    show.set_defaults(func=_show)

    status = sub.add_parser(
        "status", help="scheduler state of submitted runs (one query)", parents=[where]
    )
    status.add_argument("parent_log_dir", nargs="?", default=DEFAULT_PARENT_LOG_DIR)
    status.add_argument("-q", "--query")
    status.add_argument("--format", choices=["table", "csv", "json"], default="table")
    status.set_defaults(func=_status)

    cancel = sub.add_parser("cancel", help="cancel the jobs of runs, by log id", parents=[where])
    cancel.add_argument("log_ids", nargs="+")
    cancel.add_argument("-d", "--parent-log-dir", default=DEFAULT_PARENT_LOG_DIR)
    cancel.set_defaults(func=_cancel)

    plot = sub.add_parser(
        "plot", help="learning curves (mean ± std) and an HTML report", parents=[where]
    )
    plot.add_argument("parent_log_dir", nargs="?", default=DEFAULT_PARENT_LOG_DIR)
    plot.add_argument("-q", "--query")
    plot.add_argument(
        "-m",
        "--metric",
        action="append",
        required=True,
        help="<log>.<key>, e.g. train.loss (repeat for several)",
    )
    plot.add_argument("--by", help="comma-separated keys: one line per group")
    plot.add_argument("--over", help="the key averaged over, e.g. config.seed")
    plot.add_argument("--logx", action="store_true")
    plot.add_argument("--logy", action="store_true")
    plot.add_argument("-o", "--output", help="curves.png, .svg or .pdf")
    plot.add_argument("--html", help="a self-contained HTML report: runs table and curves")
    plot.add_argument("--title", default="mlxpy report")
    plot.set_defaults(func=_plot)

    report = sub.add_parser(
        "report",
        help="one self-contained, interactive HTML file: run table, curves, comparison",
        parents=[where],
    )
    report.add_argument("parent_log_dir", nargs="?", default=DEFAULT_PARENT_LOG_DIR)
    report.add_argument("-q", "--query", help="the runs to show (Reader.filter's language)")
    report.add_argument("-o", "--output", default="report.html", help="default: report.html")
    report.add_argument("--metrics", help="comma-separated <log>.<key> (default: every metric)")
    report.add_argument(
        "--points",
        type=int,
        help="points per run and metric (default: min(500, max(20, 400000 // (runs * metrics))))",
    )
    report.add_argument("--title", help="default: '<N> runs in <dir>'")
    report.set_defaults(func=_report)

    ui = sub.add_parser(
        "ui",
        help="the explorer served live (127.0.0.1, a token in the URL, read-only): runs, "
        "curves, statuses update as they change",
        parents=[where],
    )
    ui.add_argument("parent_log_dir", nargs="?", default=DEFAULT_PARENT_LOG_DIR)
    ui.add_argument("-q", "--query", help="only the runs matching this query")
    ui.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (127.0.0.1: only this host; reach it with ssh -L)",
    )
    ui.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    ui.add_argument("--points", type=int, help="points per run and metric (default: by size)")
    ui.add_argument("--interval", type=float, default=2.0, help="seconds between page updates")
    ui.set_defaults(func=_ui)

    by_flag = argparse.ArgumentParser(add_help=False, parents=[where])
    by_flag.add_argument("-d", "--parent-log-dir", default=DEFAULT_PARENT_LOG_DIR)

    diff = sub.add_parser(
        "diff",
        help="compare runs: the config keys that differ, metrics side by side",
        parents=[by_flag],
    )
    diff.add_argument("log_ids", nargs="+", metavar="log_id")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.set_defaults(func=_diff)

    tag = sub.add_parser(
        "tag",
        help="add (+tag) and remove (-tag) tags of runs; no tag given: show their tags",
        usage="mlxpy tag [-d PARENT_LOG_DIR] log_id [log_id ...] [+tag ...] [-tag ...]",
        parents=[by_flag],
    )
    tag.add_argument("items", nargs=argparse.REMAINDER, help="run ids, +tag, -tag")
    tag.set_defaults(func=_tag)

    note = sub.add_parser(
        "note",
        help="append a note to a run (metadata/notes.md); no text: show its notes",
        parents=[by_flag],
    )
    note.add_argument("log_id")
    note.add_argument("text", nargs="?")
    note.set_defaults(func=_note)

    archive = sub.add_parser(
        "archive",
        help="move runs aside into <log dir>/.archive/ (hidden from the Reader, restorable)",
        parents=[by_flag],
    )
    archive.add_argument("log_ids", nargs="+", metavar="log_id")
    archive.add_argument(
        "--force", action="store_true", help="also a run submitted but never started"
    )
    archive.set_defaults(func=_archive)

    restore = sub.add_parser(
        "restore",
        help="move archived runs back (<id> or <id>-<uid>); none named: list them",
        parents=[by_flag],
    )
    restore.add_argument("names", nargs="*", metavar="name")
    restore.set_defaults(func=_restore)

    rm = sub.add_parser(
        "rm", help="delete runs for good, after asking (never a live run)", parents=[by_flag]
    )
    rm.add_argument("log_ids", nargs="+", metavar="log_id")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    rm.add_argument("--force", action="store_true", help="also a run submitted but never started")
    rm.set_defaults(func=_rm)

    tail = sub.add_parser(
        "tail",
        help="a run's output (stdout, stderr); -f follows it while the run lives",
        parents=[by_flag],
    )
    tail.add_argument("log_id")
    tail.add_argument("-f", "--follow", action="store_true", help="until the run ends")
    tail.add_argument("-n", "--lines", type=int, default=20, help="last lines shown (20)")
    which = tail.add_mutually_exclusive_group()
    which.add_argument("--stdout", action="store_true", help="standard output only")
    which.add_argument("--stderr", action="store_true", help="standard error only")
    tail.set_defaults(func=_tail)

    rerun = sub.add_parser(
        "rerun",
        help="run a run's recorded command again, into a new run dir (info.rerun_of); "
        "--resume continues the same run",
        parents=[by_flag],
    )
    rerun.add_argument("log_id")
    rerun.add_argument("--resume", action="store_true", help="continue this run in place")
    rerun.set_defaults(func=_rerun)

    from mlxpy.scheduling.script_import import add_arguments as add_script_arguments

    mlxpsub = sub.add_parser(
        "sub", help="submit an MLXP batch script (with its scheduler directives), as mlxpsub"
    )
    add_script_arguments(mlxpsub)
    mlxpsub.set_defaults(func=_sub)
    sweeps = sub.add_parser(
        "sweeps", help="the sweeps of a log dir, with counts per status", parents=[where]
    )
    sweeps.add_argument("parent_log_dir", nargs="?", default=DEFAULT_PARENT_LOG_DIR)
    sweeps.add_argument("--format", choices=["table", "json"], default="table")
    sweeps.set_defaults(func=_sweeps)

    sweep = sub.add_parser("sweep", help="one sweep: status of its points, resume")
    sweep_sub = sweep.add_subparsers(dest="sweep_command", required=True)
    sweep_status = sweep_sub.add_parser(
        "status", help="each point: index, log_id, status, job id, overrides", parents=[where]
    )
    sweep_status.add_argument("sweep_id")
    sweep_status.add_argument("parent_log_dir", nargs="?", default=DEFAULT_PARENT_LOG_DIR)
    sweep_status.add_argument("--format", choices=["table", "json"], default="table")
    sweep_status.set_defaults(func=_sweep_status)
    sweep_resume = sweep_sub.add_parser(
        "resume",
        help="run the sweep's points that are missing, failed, lost... (each in its own run "
        "dir), by relaunching its recorded command with +mlxpy.sweep.resume=<id>",
        parents=[where],
    )
    sweep_resume.add_argument("sweep_id")
    sweep_resume.add_argument("parent_log_dir", nargs="?", default=DEFAULT_PARENT_LOG_DIR)
    sweep_resume.add_argument(
        "--only",
        help="comma-separated statuses to resume: missing, failed, interrupted, timeout, lost, "
        "cancelled, preempted, submit_failed (default: all of them)",
    )
    sweep_resume.set_defaults(func=_sweep_resume)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mlxpy.errors import MlxpyError

    args = build_parser().parse_args(argv)
    if getattr(args, "parent_log_dir", None) is not None:  # one rule, as the task's logger
        args.parent_log_dir = str(resolve_parent_log_dir(args.parent_log_dir, args.project_dir))
    try:
        return args.func(args)
    except MlxpyError as exc:  # a setup error of any command: one line, exit status 2
        return _setup_error(exc)
    except BrokenPipeError:  # `mlxpy runs | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
