"""The page's query language (explorer/static/query.js) against the Python evaluator: the same
runs for the same query on the same real run store, and a QueryError at the same position with
the same message for the same bad query. Every query runs in one headless Chromium page load."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import mlxpy
import pandas as pd
import pytest
import test_query_fuzz as fuzz
from conftest import require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlxpy.reading.query import MAX_DEPTH, MAX_NUMBER_LENGTH, QueryError
from mlxpy.testing import ProjectDir

QUERY_JS = Path(mlxpy.__file__).parent / "explorer" / "static" / "query.js"
CHROMEDRIVER = "/usr/bin/chromedriver"

TASK = """
import mlxpy
import pandas as pd

@mlxpy.launch(config_path="./configs")
def task(ctx):
    c = ctx.config
    lr = c.lr if c.lr == c.lr else 1.0
    for step in range(4):
        ctx.logger.log_metrics({"loss": lr * step + c.seed}, step=step)
    if c.seed == 3:
        raise RuntimeError("failing on purpose")

if __name__ == "__main__":
    task()
"""
CONFIG = {
    "seed": 1,
    "lr": 0.1,
    "name": "a",
    "flag": False,
    "mixed": 1,
    "my-key": 1,
    "tags": ["a", "b"],
    "ids": [1, 2],
    "opt": {"kind": "sgd", "mom": 0.9},
}
# each launch a small sweep: lists, bools vs ints, ints vs floats vs strings in one key, missing
# values (null, NaN, a deleted key, a key only some runs have), inf, non-ASCII and astral text
LAUNCHES = [
    ["lr=0.1,0.01", "seed=1,2,3"],  # seed 3 fails
    ["name=b,null", "lr=0.5", "tags=[c]", "ids=[true]", "mixed=abc", "my-key=2,3", "flag=true"],
    [
        'name=Zed,"😀 <img src=x onerror=alert(1)>"',
        "tags=[]",
        "ids=[1.0]",
        "mixed=2.5",
        "lr=nan,inf",
        "+extra=7",
    ],
    ["~tags", "~ids", "mixed=null", "seed=2", "lr=-1e-3"],
    ["mixed='1'", "name='Ä','\uff41'", "lr=-inf", "my-key=-4"],
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    project = ProjectDir(tmp_path_factory.mktemp("queryjs") / "proj", TASK)
    project.write_config(CONFIG)
    for overrides in LAUNCHES:
        result = project.run(*overrides)
        assert "mlxpy: error" not in result.stderr, result.stderr
    from mlxpy.cli import main as cli_main

    tagged = cli_main(["tag", "-d", str(project.logs), "1", "3", "+good", "+a:b"])
    assert tagged == 0
    return project


def payload_runs(reader: mlxpy.Reader) -> dict[str, Any]:
    """The payload's ``runs``: A's builder once merged; until then a stand-in written to the
    spec (docs: explorer-spec "The payload"), with times as the query language sees them
    (ISO 8601, as ``Reader.filter`` compares them)."""
    try:
        from mlxpy.explorer.payload import build_payload
    except ImportError:
        pass
    else:
        runs = build_payload(reader)["runs"]
        n = len(runs["ids"])  # constant columns travel once; the page expands them so
        for name, value in runs.pop("constants", {}).items():
            runs["columns"][name] = [value] * n
        return runs
    frame = reader.filter()
    from mlxpy.reading.reader import _QueryView  # the values as the evaluator sees them

    view = _QueryView(frame)
    columns = {name: [_plain(v) for v in view[name].tolist()] for name in frame.columns}
    return {"ids": [int(i) for i in frame.index], "columns": columns}


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _js_literal(data: Any) -> str:
    """``data`` as a JavaScript literal safe inside <script> (inf as Infinity, as JSON.parse
    reads the payload's 1e999)."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def run_in_chromium(tmp_path: Path, runs: dict[str, Any], queries: list[str]) -> list[dict]:
    """Each query's result in the page: {"ids": [...]} or {"error", "position"}."""
    require(shutil.which("chromium") is not None, "needs chromium: apt-get install chromium")
    require(Path(CHROMEDRIVER).exists(), "needs chromedriver: apt-get install chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    page = tmp_path / "query.html"
    page.write_text(
        "<!DOCTYPE html><meta charset='utf-8'><title>query.js</title>\n"
        f"<script>{QUERY_JS.read_text()}</script>\n<script>\n"
        f"var TABLE = {_js_literal(runs)};\nvar QUERIES = {_js_literal(queries)};\n"
        """
var NAMES = Object.keys(TABLE.columns);
var t0 = performance.now();
window.RESULTS = QUERIES.map(function (q) {
  try {
    var mask = mlxpy.query.compile(q, NAMES)(TABLE);
    var ids = [];
    for (var i = 0; i < mask.length; i++) if (mask[i] === 1) ids.push(TABLE.ids[i]);
    return {ids: ids};
  } catch (e) {
    if (e instanceof mlxpy.query.QueryError) return {error: e.message, position: e.position};
    return {crash: String(e) + " " + e.stack};
  }
});
window.ELAPSED = performance.now() - t0;
</script>""",
        encoding="utf-8",
    )
    # a local driver until tests/browser.py (helper A) is merged; then use its chrome()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chrome'}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(page.as_uri())
        results = driver.execute_script("return window.RESULTS")
        assert driver.execute_script("return window.ELAPSED") < 20_000
    finally:
        driver.quit()
    assert results is not None and len(results) == len(queries)
    return results


def python_result(reader: mlxpy.Reader, query: str) -> dict[str, Any]:
    try:
        ids = reader.filter(query).index.tolist()
    except QueryError as exc:
        message = str(exc).split("\n")[0].split("; did you mean")[0]  # query.js gives no hint
        return {"error": message, "position": exc.position}
    return {"ids": sorted(int(i) for i in ids)}


def js_result(result: dict[str, Any]) -> dict[str, Any]:
    assert "crash" not in result, result["crash"]
    if "error" in result:
        return {"error": result["error"].split("\n")[0], "position": result["position"]}
    return {"ids": sorted(result["ids"])}


HAND_WRITTEN = [
    "",
    "   ",
    # comparisons on each kind of column, both ways round
    "config.lr == 0.1",
    "config.lr != 0.1",
    "config.lr < 0.1",
    "config.lr <= 0.1",
    "config.lr > 0.01",
    "config.lr >= 0.01",
    "0.1 > config.lr",
    "0.01 <= config.lr",
    "config.lr < 1e999",
    "config.lr > -1e999",
    "config.lr == 1e999",
    "config.lr < 0",
    "config.lr == -0.001",
    "config.lr == -1e-3",
    "config.seed == 1",
    "config.seed == 1.0",  # an int equals the same float
    "config.seed < 2.5",
    "config.seed == true",  # a bool is no number
    "config.seed != true",
    "config.flag == true",
    "config.flag == 1",
    "config.flag != 1",
    "config.flag > false",
    "config.flag < 1",
    "config.flag",
    "not config.flag == true",
    "config.my-key == 2",
    "config.my-key>=3 & config.my-key<=-1",
    "config.my-key < 0",
    "-4 == config.my-key",
    "+2 == config.my-key",
    "config.my-key == 007",
    # strings: equality, code-point order (astral vs BMP), string vs number mismatches
    "config.name == 'a'",
    'config.name == "b"',
    "config.name != 'a'",
    "config.name < 'b'",
    "config.name > 'Z'",
    "config.name > '\uffff'",  # U+1F600 sorts after U+FFFF by code point, not by UTF-16
    "config.name < '\uff42'",
    "config.name >= '\u00c4'",
    "config.name == '😀 <img src=x onerror=alert(1)>'",
    "config.name == 1",
    "config.name != 1",
    "config.name < 1",
    "config.name == none",
    "config.name == null",
    "config.name != None",
    "config.name < none",
    "none == config.name",
    "config.mixed == 1",
    "config.mixed == '1'",
    "config.mixed > 1",
    "config.mixed < 'a'",
    "config.mixed != 'x'",
    "config.mixed >= 1",
    "config.mixed == 2.5",
    "config.mixed == none",
    "config.mixed",
    "~config.mixed",
    # missing keys and values
    "config.extra",
    "config.extra == 7",
    "config.extra != 7",
    "not config.extra",
    "config.tags",
    "config.ids",
    "config.lr",
    "config.lr == none",
    "config.lr != none",
    # keys against keys
    "config.lr < config.seed",
    "config.lr >= config.seed",
    "config.lr == config.seed",
    "config.lr != config.seed",
    "config.seed == config.my-key",
    "config.seed < config.my-key",
    "config.name == config.mixed",
    "config.tags == config.tags",
    "config.tags != config.ids",
    "config.ids < config.ids",
    "config.tags < config.tags",
    "config.ids <= config.ids",
    "config.flag == config.seed",
    "info.status == info.status",
    "log_id == config.seed",
    # in / not in: lists, keys holding lists, contains
    "config.seed in [1, 2]",
    "config.seed not in [1, 2]",
    "config.seed in []",
    "config.seed not in []",
    "config.name in ['a', 'Zed', none]",
    "config.name in [none]",
    "config.lr in [0.1, 1e999]",
    "config.flag in [1]",
    "config.flag in [true]",
    "config.seed in [true]",
    "config.mixed in ['1', 2.5]",
    "'c' in config.tags",
    "'c' not in config.tags",
    "config.name in config.tags",
    "config.name not in config.tags",
    "1 in config.ids",
    "true in config.ids",
    "1.0 in config.ids",
    "none in config.tags",
    "'good' in tags",
    "tags contains 'good'",
    "tags contains 'a:b'",
    "tags not contains 'good'",
    "not tags contains 'good'",
    "config.tags contains 'a'",
    "config.tags CONTAINS 'a'",
    "config.tags contains config.name",
    "config.ids contains 1",
    "config.ids contains true",
    "config.tags contains 'a' | config.tags contains 'c'",
    "config.tags == 'a'",
    "config.tags != 'a'",
    "config.tags < 'a'",
    "config.tags == none",
    # boolean structure, every spelling
    "config.seed == 1 & config.lr == 0.1",
    "config.seed == 1 and config.lr == 0.1",
    "config.seed == 1 && config.lr == 0.1",
    "config.seed == 1 AND config.lr == 0.1",
    "config.seed == 1 | config.lr == 0.5",
    "config.seed == 1 or config.lr == 0.5",
    "config.seed == 1 || config.lr == 0.5",
    "~(config.seed == 1)",
    "not config.seed == 1",
    "NOT (config.seed == 1 or config.seed == 2)",
    "~~config.flag",
    "config.seed == 1 | config.seed == 2 & config.lr == 0.5",
    "(config.seed == 1 | config.seed == 2) & config.lr == 0.1",
    "info.status == 'FAILED'",
    "info.status == 'COMPLETE' & train.loss.last < 1.5",
    "train.loss.min >= 1 and train.loss.count == 4",
    "info.error.type == 'RuntimeError'",
    "info.error.type",
    "info.start_time > '2000-01-01'",
    "info.start_time < '2000-01-01'",
    "info.end_time >= info.start_time",
    "info.end_time == none",
    "info.start_time == 1",
    "log_id > 3 & log_id <= 9",
    "log_id in [1, 15]",
    "info.status",  # (log_dir: left out of the payload, docs/explorer.md)
    "config.opt.kind == 'sgd'",
    "config.opt.mom < 1",
    "config.name == 'a\\'b' | config.name == \"b\"",
    "config.name == 'a\x00'",
    "config.lr\n<\t0.1",
    "(" * MAX_DEPTH + "config.seed == 1" + ")" * MAX_DEPTH,
    "not " * MAX_DEPTH + "config.seed == 1",
    "~" * (MAX_DEPTH - 1) + "config.seed == 1",
    " & ".join(["config.seed == 1"] * 300) + " | " + " or ".join(["config.lr > 1"] * 300),
    "config.seed == " + "0" * (MAX_NUMBER_LENGTH - 1) + "1",
    "config.lr > 0." + "0" * (MAX_NUMBER_LENGTH - 3) + "1",
    "config.lr < 1e999999",
    "config.lr > -1e999999",
    "config.lr > 1e-999999",
    # bad queries: a QueryError, at the same place, with the same message
    "(" * (MAX_DEPTH + 1) + "config.seed == 1" + ")" * (MAX_DEPTH + 1),
    "not " * (MAX_DEPTH + 5) + "config.seed == 1",
    "~" * (MAX_DEPTH + 300) + "config.seed == 1",
    "config.seed == " + "1" * (MAX_NUMBER_LENGTH + 1),
    "config.lr < 1e" + "1" * 5000,
    "nope.key == 1",
    "config.lrr < 1",
    "config.seed == 1 | nope",
    "😀 == 1",
    "config.name == '😀' & 😀",
    "config.name == '😀' & nope",
    "config.name == 'abc",
    'config.name == "a\\"',
    "'",
    "==",
    "&",
    ")",
    "~",
    "not in",
    "config.seed in",
    "config.seed in [",
    "config.seed in [1,",
    "config.seed in [1 2]",
    "config.seed == 1\x00",
    "\x00config.seed",
    "config.my - key == 1",
    "config.seed == 1_000",
    "config.seed == ²",
    "config.seed == 1١",
    "config.seed == １",
    "config.seed == 1 config.lr",
    "(config.seed == 1",
    "config.seed == 1)",
    "1 == 1",
    "'a' == 'a'",
    "1",
    "config.seed == [1]",
    "[1] == config.seed",
    "['a'] in config.tags",
    "config.name in config.seed",
    "config.name not in config.lr",
    "'a' in config.name",
    "config.seed in 1",
    "config.seed not in 'a'",
    "config.seed in none",
    "config.name in nope.tags",
    "nope.a in config.tags",
    "config.name in config.lr | nope",  # the first error wins: no list under config.lr
    "nope | config.name in config.lr",
    "'a' contains config.tags",
    "config.tags contains ['a']",
    "config.lr contains 1",
    "config.tags contains",
    "nope.tags contains 'a'",
    "config.name ==",
    "config.name === 'a'",
    "config.name = 'a'",
    "config.name == 'a' &",
    "config.name == 'a' ; import os",
    "__import__('os').system('true')",
    "config.name == 'a'\t\n&\x00",
]


def draw(strategy: st.SearchStrategy, count: int) -> list:
    """``count`` examples of a strategy of tests/test_query_fuzz.py, the same ones each run."""
    examples: list = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example):
        examples.append(example)

    collect()
    return examples


def generated_queries() -> list[str]:
    valid = [text for text, _tree in draw(fuzz.queries, 300)]
    soup = [" ".join(t) for t in draw(st.lists(st.sampled_from(fuzz.TOKENS), max_size=12), 200)]
    hostile = draw(st.lists(st.one_of(st.sampled_from(fuzz.TOKENS), fuzz.HOSTILE), max_size=6), 150)
    return valid + soup + [" ".join(parts) for parts in hostile]


@pytest.mark.browser
def test_query_js_selects_the_same_runs_as_reader_filter(store, tmp_path):
    reader = mlxpy.Reader(store.logs)
    assert len(reader) == 17
    runs = payload_runs(reader)
    queries = HAND_WRITTEN + generated_queries()
    expected = [python_result(reader, q) for q in queries]
    # the corpus means something: most valid queries select some runs and not all, and the
    # bad ones fail in both parsing and evaluating (unknown key, no list under a key)
    selected = [len(e["ids"]) for e in expected if "ids" in e]
    assert sum(0 < n < len(reader) for n in selected) > 200
    errors = [e["error"] for e in expected if "error" in e]
    assert any("no run has the key" in e for e in errors)
    assert any("no run has a list under" in e for e in errors)
    assert len(errors) > 100
    actual = [js_result(r) for r in run_in_chromium(tmp_path, runs, queries)]
    wrong = [(q, e, a) for q, e, a in zip(queries, expected, actual, strict=True) if e != a]
    assert not wrong, "\n".join(f"{q!r}:\n  python {e}\n  js     {a}" for q, e, a in wrong[:20])
