"""The ``mlxpy`` command."""

from __future__ import annotations

import argparse
import json
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
    print("# artifacts")
    print("\n".join(artifacts) or "(none)")
    print("# checkpoints")
    print("\n".join(checkpoints) or "(none)")
    return 0


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


def _sub(args: argparse.Namespace) -> int:
    from mlxpy.scheduling.script_import import submit

    return submit(args.script, args.dry_run)


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
