"""Questions asked at launch when the working copy has uncommitted work. Asked only on a
terminal; invalid answers ask again; end of input aborts cleanly."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mlxpy.errors import MlxpyError

Ask = Callable[[str], str]


def _ask(question: str, choices: dict[str, str], ask: Ask) -> str:
    keys = "/".join(choices)
    while True:
        try:
            answer = ask(f"{question} [{keys}] ").strip().lower()
        except EOFError:
            raise MlxpyError("launch aborted: no answer (end of input)") from None
        if answer in choices:
            return choices[answer]
        print(
            f"Please answer one of: {', '.join(f'{k} ({v})' for k, v in choices.items())}",
            file=sys.stderr,
        )


def choose_untracked(files: list[str], ask: Ask = input) -> list[str]:
    """Which untracked files to add to an automatic commit."""
    print("Untracked files (not in the commit, so not in the snapshot):", file=sys.stderr)
    for name in files:
        print(f"  {name}", file=sys.stderr)
    choice = _ask("Add them?", {"a": "add all", "c": "choose", "s": "skip"}, ask)
    if choice == "add all":
        return list(files)
    if choice == "skip":
        return []
    return [name for name in files if _ask(f"  add {name}?", {"y": "yes", "n": "no"}, ask) == "yes"]


def choose_changes(files: list[str], ask: Ask = input) -> str:
    """'commit', 'last' (go on from the last commit) or raise on 'abort'."""
    print("Uncommitted changes:", file=sys.stderr)
    for name in files:
        print(f"  {name}", file=sys.stderr)
    choice = _ask(
        "Commit them and run the new commit, run the last commit without them, or abort?",
        {"c": "commit", "l": "last commit", "a": "abort"},
        ask,
    )
    if choice == "abort":
        raise MlxpyError("launch aborted at the uncommitted-changes question")
    return "commit" if choice == "commit" else "last"
