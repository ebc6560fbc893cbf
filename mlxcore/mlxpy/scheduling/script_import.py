"""``mlxpsub script.sh`` (and ``mlxpy sub script.sh``): submit an MLXP-style batch script.

MLXP users keep their cluster resources in a shell script: scheduler directives (the lines
an installed scheduler plugin's ``directive_prefix`` starts), environment lines (``module
load``, ``source env/bin/activate``) and one or more ``python main.py ...`` lines. Here the
directives select the scheduler that writes them and become its ``option_cmd``, the
environment lines its ``env_cmd``, and each python line an ordinary mlxpy launch with
``+mlxpy.use_scheduler=true``, so every sweep point is its own job (or array task) with its
own run directory, as with any scheduled mlxpy launch. Which scheduler writes which
directives, and which directive options mlxpy sets itself, is read from the installed
schedulers (``directive_prefix``, ``reserved_directives``): the core names none.

The script runs once, in its shell, at submission (as MLXP does): its variables, ``cd`` and
environment lines take effect there, and each python line gets mlxpy's options appended.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlxpy.errors import ConfigError, PluginError
from mlxpy.scheduling.base import Scheduler

if TYPE_CHECKING:
    from mlxpy.plugins.registry import PluginRegistry

#: the shape of any scheduler's directive line: ``#`` and a word in capitals, then an option;
#: such a line that no installed scheduler writes is refused, never read as a comment
_DIRECTIVE_SHAPE = re.compile(r"#[A-Z][A-Z0-9_]*\s+--?[A-Za-z]")

#: commands that may name python without running it (``module load python``): environment
#: lines; any other line naming python besides a python line is refused
_ENVIRONMENT_TOOLS = {"module", "ml", "conda", "mamba", "micromamba", "spack", "pip", "uv"}
_ENVIRONMENT_TOOLS |= {"source", ".", "export", "echo", "which"}
_PYTHON = re.compile(r"python[0-9.]*")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


class ScriptError(ConfigError):
    """A batch script ``mlxpsub`` cannot turn into mlxpy launches (exit status 2)."""


@dataclass
class DirectiveWriters:
    """The installed schedulers by the directive prefix each writes (its own
    ``directive_prefix``): how a batch script's directives tell its scheduler."""

    #: prefix -> (registered name, class) of every scheduler writing it
    by_prefix: dict[str, list[tuple[str, type[Scheduler]]]] = field(default_factory=dict)
    #: why a registered scheduler name could not be resolved (a name several plugins give)
    unresolved: list[str] = field(default_factory=list)

    @classmethod
    def installed(cls, registry: PluginRegistry | None = None) -> DirectiveWriters:
        """Read from the plugin registry (default: the process-wide one)."""
        if registry is None:
            from mlxpy.plugins import get_plugins

            registry = get_plugins()
        writers = cls()
        for name in registry.available("scheduler"):
            try:
                scheduler = registry.resolve("scheduler", name)
            except PluginError as exc:
                writers.unresolved.append(str(exc))
                continue
            prefix = getattr(scheduler, "directive_prefix", "")
            if prefix:
                writers.by_prefix.setdefault(prefix, []).append((name, scheduler))
        return writers

    def match(self, line: str) -> tuple[str, str] | None:
        """``(prefix, options)`` of a directive line (stripped) an installed scheduler
        writes; None for any other line."""
        for prefix in sorted(self.by_prefix, key=len, reverse=True):
            if line == prefix or (line.startswith(prefix) and line[len(prefix)].isspace()):
                return prefix, line[len(prefix) :].strip()
        return None

    def writer(self, prefix: str, where: str) -> tuple[str, type[Scheduler]]:
        """The one scheduler writing ``prefix``; a :class:`ScriptError` when several do."""
        (found, *others) = self.by_prefix[prefix]
        if others:
            names = ", ".join(f"{n} ({c.__module__}.{c.__qualname__})" for n, c in [found, *others])
            raise ScriptError(
                f"{where}: several installed schedulers write '{prefix}' directives: {names}; "
                "mlxpsub cannot tell which one the script is for: uninstall the plugins you "
                "do not use (`mlxpy plugins` lists what is installed)"
            )
        return found

    def unknown(self, line: str, where: str) -> ScriptError:
        """The error for a directive-looking line whose prefix no installed scheduler writes."""
        word = line.split(maxsplit=1)[0]
        known = ", ".join(
            f"{prefix} ({' or '.join(n for n, _ in writers)})"
            for prefix, writers in sorted(self.by_prefix.items())
        )
        message = (
            f"{where}: {line!r}: no installed scheduler writes '{word}' directives: install "
            "the scheduler plugin for your cluster; `mlxpy plugins` lists what is installed "
            f"(the installed schedulers write: {known or 'no directives'})"
        )
        for reason in self.unresolved:  # perhaps the one writing them
            message += f"; a scheduler mlxpsub could not look at: {reason}"
        return ScriptError(message)


@dataclass
class PythonCommand:
    """One python line (its continuation lines joined), without its trailing comment."""

    line: int
    text: str


@dataclass
class ImportedScript:
    """What a batch script stands for: the scheduler, its options, and the launches."""

    path: str
    scheduler: str | None  # None: no directive, the one mlxpy.yaml selects
    option_cmd: list[str] = field(default_factory=list)
    env_cmd: list[str] = field(default_factory=list)
    shell_path: str = ""
    commands: list[PythonCommand] = field(default_factory=list)
    #: the script's lines as the submitting shell runs them; None stands for a python line
    plan: list[str | None] = field(default_factory=list, repr=False)

    def overrides(self) -> list[str]:
        """The options appended to each python line."""
        out = ["+mlxpy.use_scheduler=true"]
        if self.scheduler is not None:
            out.append(f"+mlxpy.scheduler.name={self.scheduler}")
            items = ",".join(_quoted(o) for o in self.option_cmd)
            out.append(f"+mlxpy.scheduler.option_cmd=[{items}]")
        if self.shell_path:
            out.append(f"+mlxpy.scheduler.shell_path={_quoted(self.shell_path)}")
        out.append(f"+mlxpy.scheduler.env_cmd={_quoted(chr(10).join(self.env_cmd))}")
        return out

    def launch_lines(self) -> list[str]:
        """Each python line as the submitting shell runs it."""
        tail = " ".join(shlex.quote(o) for o in self.overrides())
        return [f"{c.text} {tail}" for c in self.commands]

    def submission_script(self) -> str:
        launches = iter(self.launch_lines())
        lines = [next(launches) + " || exit $?" if line is None else line for line in self.plan]
        return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    """``text`` as one quoted value of Hydra's override grammar."""
    from hydra.core.override_parser.types import Quote, QuotedString

    quote = Quote.single if '"' in text and "'" not in text else Quote.double
    return QuotedString(text=text, quote=quote).with_quotes()


# -- reading a script --------------------------------------------------------------------------
def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each line, joining a line that ends in a backslash (out
    of quotes) with the next, as the shell does."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        joined = pending + line
        if not joined.lstrip().startswith("#") and _ends_in_continuation(joined):
            pending = joined[:-1]
            continue
        out.append((start, joined))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _ends_in_continuation(line: str) -> bool:
    """A backslash ending the code (not a comment, not quoted, not itself escaped)."""
    code, _, quote = _scan(line)
    trailing = len(code) - len(code.rstrip("\\"))
    return quote is None and code == line.rstrip() and trailing % 2 == 1


def _scan(line: str) -> tuple[str, list[str], str | None]:
    """``(code without its trailing comment, shell operators found out of quotes, the quote
    left open)``: what mlxpsub must know before appending options to a command."""
    operators: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote == "'":
            if ch == "'":
                quote = None
        elif ch == "\\":
            i += 1  # the next character is escaped (out of quotes or in double quotes)
        elif quote == '"':
            if ch == '"':
                quote = None
            elif ch == "`" or line.startswith("$(", i):
                operators.append(ch if ch == "`" else "$(")
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), operators, None
        elif ch in ";&|<>()`":
            operators.append("$(" if ch == "(" and i > 0 and line[i - 1] == "$" else ch)
        i += 1
    return line.rstrip(), operators, quote


def _is_python(word: str) -> bool:
    return bool(_PYTHON.fullmatch(os.path.basename(word)))


def parse_script(
    text: str, path: str = "the batch script", registry: PluginRegistry | None = None
) -> ImportedScript:
    """Read a batch script; a :class:`ScriptError` names the line and says how to fix it.
    ``registry`` holds the schedulers whose directives the script may carry (default: the
    installed ones)."""
    writers = DirectiveWriters.installed(registry)
    directives: dict[str, list[tuple[int, str]]] = {}
    script = ImportedScript(path=path, scheduler=None)
    for number, raw in _logical_lines(text):
        line = raw.strip()
        where = f"{path}, line {number}"
        if not line:
            continue
        if number == 1 and line.startswith("#!"):
            shell = line[2:].strip()
            if shell and " " not in shell:
                script.shell_path = shell
            script.plan.append(raw)
            continue
        if line.startswith("#"):
            directive = writers.match(line)
            if directive is None and _DIRECTIVE_SHAPE.match(line):
                raise writers.unknown(line, where)
            if directive is not None and directive[1]:
                directives.setdefault(directive[0], []).append((number, directive[1]))
            script.plan.append(raw)
            continue
        code, operators, open_quote = _scan(line)
        if open_quote:
            raise ScriptError(f"{where}: a {open_quote} quote is never closed")
        words = shlex.split(code)
        if not words:
            continue
        first = os.path.basename(words[0])
        if _is_python(words[0]):
            _check_python_line(where, code, words, operators)
            script.commands.append(PythonCommand(number, code))
            script.plan.append(None)
        elif any(_is_python(w) for w in words) and first not in _ENVIRONMENT_TOOLS:
            raise ScriptError(
                f"{where}: {code!r}: mlxpsub submits the lines that start with python; a "
                "command in front of python (srun, VAR=value, a loop) would be lost, since "
                "mlxpy's job script runs python itself: write the python command first on its "
                "line, a sweep (key=a,b) instead of a loop, and `export VAR=value` on a line "
                "before the python lines to set a variable in every job"
            )
        elif all(_ASSIGNMENT.match(w) for w in words) or first == "cd":
            script.plan.append(raw)  # the submitting shell's own state (MLXP drops them too)
        elif script.commands:
            raise ScriptError(
                f"{where}: {code!r} follows a python line; mlxpy's job runs nothing after "
                "the python command: move the line before the python lines (it then runs in "
                "every job) or remove it"
            )
        else:
            script.env_cmd.append(code)
            script.plan.append(raw)
    _set_scheduler(script, directives, writers, path)
    if not script.commands:
        raise ScriptError(
            f"{path} has no python line: add one such as `python main.py key=a,b` (a script "
            "using @mlxpy.launch), which mlxpsub submits"
        )
    return script


def _check_python_line(where: str, code: str, words: list[str], operators: list[str]) -> None:
    if operators:
        raise ScriptError(
            f"{where}: {code!r} holds {operators[0]!r} out of quotes: mlxpsub appends mlxpy's "
            "options to the python command, so write it alone on its line (no ;, &&, |, "
            "redirection, & or $(...)), and quote sweeps such as 'seed=range(0,3)'"
        )
    if len(words) < 2:
        raise ScriptError(f"{where}: {code!r} runs python without a script to launch")


def _set_scheduler(
    script: ImportedScript,
    directives: dict[str, list[tuple[int, str]]],
    writers: DirectiveWriters,
    path: str,
) -> None:
    if len(directives) > 1:
        found = ", ".join(f"{p} (line {lines[0][0]})" for p, lines in directives.items())
        raise ScriptError(
            f"{path} holds directives of two schedulers, {found}: a script goes to one "
            "scheduler; keep the directives of the cluster you submit to"
        )
    for prefix, lines in directives.items():
        name, scheduler = writers.writer(prefix, f"{path}, line {lines[0][0]}")
        for number, option in lines:
            _refuse_reserved(prefix, option, scheduler, f"{path}, line {number}")
        script.scheduler = name
        script.option_cmd = [option for _, option in lines]


def _refuse_reserved(prefix: str, option: str, scheduler: type[Scheduler], where: str) -> None:
    """Refuse a directive setting an option the scheduler's own directives set."""
    try:
        words = shlex.split(option)
    except ValueError:
        words = option.split()
    reserved = scheduler.reserved_directives
    for word in words:
        if not word.startswith("-"):
            continue
        name = word.split("=", 1)[0]
        if not name.startswith("--"):
            name = name[:2]  # -oFILE, -o FILE
        if name in reserved:
            raise ScriptError(
                f"{where}: '{prefix} {option}': {name} is set by mlxpy ({reserved[name]}); "
                "remove the directive"
            )


# -- the commands --------------------------------------------------------------------------------
def submit(path: Path, dry_run: bool = False) -> int:
    """Run the script's launches (or, with ``dry_run``, print what would run)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"cannot read the script {path}: {exc.strerror or exc}") from exc
    script = parse_script(text, str(path))
    if dry_run:
        print(describe(script))
        return 0
    shell = script.shell_path or "/bin/bash"
    if not os.access(shell, os.X_OK):
        shell = "/bin/bash"
    result = subprocess.run([shell, "-c", script.submission_script(), str(path)], check=False)
    return result.returncode


def describe(script: ImportedScript) -> str:
    scheduler = script.scheduler or "the scheduler mlxpy.yaml selects"
    lines = [f"{script.path}: {len(script.commands)} launch(es) with {scheduler}"]
    if script.scheduler is not None:
        lines.append(f"  option_cmd: {script.option_cmd}")
    lines.append(f"  env_cmd: {script.env_cmd}")
    for command, launch in zip(script.commands, script.launch_lines(), strict=True):
        lines.append(f"  line {command.line}: {launch}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "script",
        type=Path,
        help="a batch script; its scheduler directives (the lines an installed scheduler "
        "plugin's directive_prefix starts) select that scheduler",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the launches without running them"
    )


def main(argv: list[str] | None = None) -> int:
    """The ``mlxpsub`` console script: ``mlxpsub [--dry-run] script.sh``."""
    parser = argparse.ArgumentParser(
        prog="mlxpsub", description="Submit an MLXP-style batch script with mlxpy."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return submit(args.script, args.dry_run)
    except ConfigError as exc:
        print(f"mlxpsub: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
