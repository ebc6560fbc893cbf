"""``mlxpy report``: the payload checked against the logged metrics, and the page driven in
headless Chromium (table, grouping, selection both ways, comparison, no network, no script
from run data); screenshots of each view go to tests/artifacts/."""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys

import mlxpy
import numpy as np
import pytest
from browser import chrome, console_errors, requests_made, wait_ready
from conftest import Project
from mlxpy.explorer.page import render_report
from mlxpy.explorer.payload import build_payload, dumps
from selenium.webdriver.support.ui import WebDriverWait
from test_plotting import ARTIFACTS

HOSTILE = "<img src=x onerror=window.__xss=1>"
LRS = (0.1, 0.3, 1.0)
SEEDS = (1, 2, 3)

TASK = """
import math
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    c = ctx.config
    for step in range(c.steps):
        loss = 2.0 * math.exp(-c.lr * step / 6) + 0.08 * (c.seed - 2) * math.cos(step / 3) + 0.1
        record = {"loss": loss, "acc": 1 - loss / 3}
        if step % (1 + c.seed % 2) == 0:  # odd seeds log it every other step
            record["sparse"] = step * c.lr
        if c.seed == 1 and step == c.steps - 1:
            record["spike"] = float("inf")
        ctx.logger.log_metrics(record, step=step)
        if c.lr == 1.0 and c.seed == 3 and step == 12:
            raise RuntimeError("diverged")

if __name__ == "__main__":
    task()
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Nine real runs (3 learning rates x 3 seeds), one FAILED after 13 steps."""
    root = tmp_path_factory.mktemp("report")
    project = Project(root, root)
    project.write_main(TASK)
    project.write_config(f"seed: 0\nlr: 0.1\nsteps: 30\nnote: '{HOSTILE}'\n")
    lrs = ",".join(map(str, LRS))
    seeds = ",".join(map(str, SEEDS))
    result = project.run(f"lr={lrs}", f"seed={seeds}")
    assert result.returncode == 1, result.stderr  # the one failing run
    assert "report: mlxpy report" in result.stderr  # the sweep ends naming the report
    return project


@pytest.fixture(scope="module")
def reader(store):
    reader = mlxpy.Reader(store.logs)
    yield reader
    reader.close()


def curves(payload, name):
    doc = payload["curves"][name]
    n = len(doc["grid"])
    values = np.frombuffer(base64.b64decode(doc["values"]), "<f4").reshape(-1, n)
    codes = np.frombuffer(base64.b64decode(doc["time"]), "<u2").reshape(-1, n)
    times = np.where(codes == 65535, np.nan, codes * doc["time_scale"])
    return doc["grid"], values, times


def columns_of(payload):
    """Every column, one value per run: the constant ones travel once."""
    n = len(payload["runs"]["ids"])
    out = dict(payload["runs"]["columns"])
    out.update({k: [v] * n for k, v in payload["runs"]["constants"].items()})
    return out


def logged(reader, name):
    """log_id -> {step: value} as logged, read back by the Reader."""
    log, key = name.split(".", 1)
    long = reader.filter().mlxpy.metrics(log, config=[])
    long = long[long[key].notna()]
    return {
        i: dict(zip(g["step"].tolist(), g[key].tolist(), strict=True))
        for i, g in long.groupby("log_id")
    }


def test_grid_holds_every_step_and_the_logged_values(reader):
    payload = build_payload(reader)
    assert payload["format"] == 1 and payload["generation"] == 0
    assert payload["runs"]["ids"] == list(range(1, 10))
    grid, values, times = curves(payload, "train.loss")
    assert grid == list(range(30))
    truth = logged(reader, "train.loss")
    for row, log_id in enumerate(payload["runs"]["ids"]):
        for j, step in enumerate(grid):
            if step in truth[log_id]:
                assert values[row, j] == pytest.approx(truth[log_id][step], rel=1e-6)
            else:  # the FAILED run stopped at step 12: nothing drawn after it
                assert math.isnan(values[row, j]) and step > max(truth[log_id])
        assert times[row, 0] == 0 and np.all(np.diff(times[row][~np.isnan(times[row])]) >= 0)
    assert set(payload["curves"]) == {"train.loss", "train.acc", "train.sparse", "train.spike"}


def test_downsampling_keeps_existing_steps_and_the_last_value_before(reader):
    payload = build_payload(reader, metrics=["train.loss", "train.sparse"], points=4)
    assert payload["points"] == 4
    grid, values, _ = curves(payload, "train.loss")
    assert grid == [0, 10, 19, 29]  # linspace(0, 29, 4) rounded to the nearest steps
    truth = logged(reader, "train.loss")
    assert values[0].tolist() == pytest.approx([truth[1][s] for s in grid], rel=1e-6)
    grid, values, _ = curves(build_payload(reader, metrics=["train.sparse"]), "train.sparse")
    assert grid == list(range(30))  # the union of every run's steps
    sparse = logged(reader, "train.sparse")
    assert 1 not in sparse[1] and 1 in sparse[2]  # seed 1 logs it every other step
    assert values[0, 1] == pytest.approx(sparse[1][0])  # its last value at or before step 1


def test_bands_are_mean_and_std_over_every_logged_step(reader):
    payload = build_payload(reader)
    band = payload["bands"]["train.loss"]
    assert band["group_by"] == ["config.lr"]  # varying config, seeds left out
    truth = logged(reader, "train.loss")
    runs = reader.filter()
    by_lr = {lr: [i for i in runs.index if runs.loc[i, "config.lr"] == lr] for lr in LRS}
    assert [g["key"] for g in band["groups"]] == [[lr] for lr in LRS]
    for group in band["groups"]:
        members = by_lr[group["key"][0]]
        assert group["runs"] == 3
        for k, step in enumerate(group["step"]):
            values = np.array([truth[i][step] for i in members if step in truth[i]])
            assert group["count"][k] == len(values)
            assert group["mean"][k] == pytest.approx(values.mean())
            assert group["min"][k] == values.min() and group["max"][k] == values.max()
            if len(values) > 1:
                assert group["std"][k] == pytest.approx(values.std(ddof=1))
            else:
                assert group["std"][k] is None
    failing = band["groups"][2]
    assert failing["count"][12] == 3 and failing["count"][13] == 2  # run 9 failed at 12


def test_columns_constant_infinity_and_hostile_strings(reader):
    payload = build_payload(reader)
    columns = columns_of(payload)
    assert columns["info.status"].count("FAILED") == 1
    assert "config.note" in payload["constant"] and "config.steps" in payload["constant"]
    assert "config.lr" not in payload["constant"] and "config.seed" not in payload["constant"]
    assert columns["config.note"] == [HOSTILE] * 9
    spike = columns["train.spike.last"]
    assert spike[0] == math.inf and spike[1] is None  # seed 1's inf; others never logged it
    text = dumps(payload)
    assert "<" not in text and ">" not in text and "&" not in text
    # (the curves' base64 may hold the letters "NaN" by chance: checked without them)
    plain = dumps({k: v for k, v in payload.items() if k != "curves"})
    assert "1e999" in plain and "Infinity" not in plain and "NaN" not in plain
    back = json.loads(text)
    assert back["runs"]["constants"]["config.note"] == HOSTILE
    assert back["runs"]["columns"]["train.spike.last"][0] == math.inf
    assert "log_dir" not in columns and "info.uid" not in columns  # where runs live: left out
    # strings that look like the tokens stay strings
    odd = {"a": "</script><!--\u2028\u2029", "b": -math.inf, "c": "Infinity", "d": math.nan}
    assert json.loads(dumps(odd)) == {**odd, "d": None}
    assert re.search(r"</script|\u2028|\u2029", dumps(odd)) is None


def test_the_report_command(store, tmp_path):
    out = tmp_path / "r.html"
    env_cmd = [sys.executable, "-m", "mlxpy.cli", "report", str(store.logs), "-o", str(out)]
    done = subprocess.run(
        [*env_cmd, "-q", "config.lr == 1.0", "--metrics", "train.loss", "--title", "lr 1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {out} (3 runs, 1 metrics)"
    page = out.read_text()
    data = page.split('id="mlxpy-data">', 1)[1].split("</script>", 1)[0]
    payload = json.loads(data)
    assert payload["runs"]["ids"] == [7, 8, 9] and list(payload["curves"]) == ["train.loss"]
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for bad, message in (
        (["-q", "config.lr >"], "bad query"),
        (["--metrics", "train.nope"], "train.nope"),
        (["--points", "1"], "--points"),
    ):
        done = subprocess.run([*env_cmd, *bad], capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", "report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no log directory" in missing.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", "show", "1", str(store.logs)],
        capture_output=True,
        text=True,
    )
    assert re.search(r"^mlxpy report \S+ -q 'info.sweep_id == \"\S+\"'$", shown.stdout, re.M)


# ---------- the page in a real browser ----------


@pytest.fixture(scope="module")
def page(reader, tmp_path_factory):
    path = tmp_path_factory.mktemp("page") / "report.html"
    path.write_text(render_report(build_payload(reader, title="Learning-rate sweep"), "lr"))
    return path


@pytest.fixture
def browser(page, tmp_path):
    driver = chrome(tmp_path)
    try:
        driver.get(page.as_uri())
        wait_ready(driver)
        yield driver
    finally:
        driver.quit()


def state(driver):
    return driver.execute_script("return window.mlxpy.explorer.state")


def shot(driver, name, element_id=None):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if element_id:
        driver.execute_script(f"document.getElementById('{element_id}').scrollIntoView()")
        driver.execute_script("window.scrollBy(0, -120)")  # below the sticky header
    driver.save_screenshot(str(ARTIFACTS / name))


@pytest.mark.browser
def test_no_request_no_script_from_data(page, tmp_path):
    driver = chrome(tmp_path)
    try:
        driver.get(page.as_uri())
        wait_ready(driver)
        assert requests_made(driver) == [page.as_uri()]
        assert console_errors(driver) == []
        driver.find_element("id", "show-constant").click()
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('#run-table td'))"
            ".map(td => td.textContent)"
        )
        assert cells.count(HOSTILE) == 9  # shown as text, once per run
        assert driver.execute_script("return document.querySelectorAll('img').length") == 0
        assert driver.execute_script("return window.__xss") is None
        assert requests_made(driver) == []  # nothing fetched afterwards either
    finally:
        driver.quit()


@pytest.mark.browser
def test_table_shows_every_run_and_failed_distinctly(browser):
    rows = browser.find_elements("css selector", "#run-table tr[data-run-id]")
    assert [int(r.get_attribute("data-run-id")) for r in rows] == list(range(1, 10))
    assert state(browser)["visibleIds"] == list(range(1, 10))
    assert browser.find_element("id", "run-count").text == "9 of 9 runs"
    failed = browser.find_element("css selector", "tr[data-run-id='9']")
    done = browser.find_element("css selector", "tr[data-run-id='1']")
    assert "status-FAILED" in failed.get_attribute("class")
    assert "status-COMPLETE" in done.get_attribute("class")
    background = "return getComputedStyle(arguments[0].cells[1]).backgroundColor"
    assert browser.execute_script(background, failed) != browser.execute_script(background, done)
    headers = [th.text for th in browser.find_elements("css selector", "#run-table th[data-col]")]
    assert "note" not in headers and "steps" not in headers  # constant: hidden
    assert {"lr", "seed"} <= set(headers)
    # sorting by a header
    browser.find_element("css selector", "th[data-col='config.seed']").click()
    browser.find_element("css selector", "th[data-col='config.seed']").click()
    assert state(browser)["visibleIds"][:3] == [3, 6, 9]  # seed 3 first, descending
    shot(browser, "report-table.png", "table-panel")


QUERIES_IN_THE_PAGE = [
    "config.lr > 0.1",
    "info.status == 'FAILED' or config.seed == 1",
    "not (config.lr == 0.3) and train.loss.min < 1",
    "train.acc.argmax_step > 20",
    "config.seed in [1, 3] & train.spike.last > 0",
    "train.spike.last",
    "",
]


@pytest.mark.browser
@pytest.mark.parametrize("query", QUERIES_IN_THE_PAGE)
def test_the_query_box_shows_the_runs_reader_filter_gives(reader, browser, query):
    expected = [int(i) for i in reader.filter(query).index]
    box = browser.find_element("id", "query")
    box.clear()
    box.send_keys(query + "\n")  # Enter applies it
    WebDriverWait(browser, 10).until(lambda d: state(d)["visibleIds"] == expected)
    assert browser.find_element("id", "run-count").text == f"{len(expected)} of 9 runs"
    assert browser.find_element("id", "query-error").text == ""
    rows = browser.find_elements("css selector", "#run-table tr[data-run-id]")
    assert sorted(int(r.get_attribute("data-run-id")) for r in rows) == sorted(expected)


@pytest.mark.browser
def test_a_bad_query_in_the_page_says_where(browser):
    box = browser.find_element("id", "query")
    box.send_keys("config.lr > \n")
    WebDriverWait(browser, 10).until(lambda d: d.find_element("id", "query-error").text != "")
    assert "expected" in browser.find_element("id", "query-error").text
    box.clear()
    box.send_keys("config.nope == 1\n")
    WebDriverWait(browser, 10).until(
        lambda d: "no run has the key 'config.nope'" in d.find_element("id", "query-error").text
    )


@pytest.mark.browser
def test_grouping_changes_the_curves(browser):
    assert state(browser)["seriesCount"] == 3  # grouped by lr: a band per learning rate
    shot(browser, "report-grouped.png")
    browser.find_element("id", "ungroup").click()
    assert state(browser)["seriesCount"] == 9  # a curve per run
    browser.execute_script(
        "var s = document.getElementById('group-by');"
        "Array.from(s.options).forEach(o => o.selected = o.value === 'config.seed');"
        "s.dispatchEvent(new Event('change'))"
    )
    assert state(browser)["seriesCount"] == 3
    browser.execute_script(
        "var s = document.getElementById('band'); s.value = 'minmax';"
        "s.dispatchEvent(new Event('change'))"
    )
    assert state(browser)["seriesCount"] == 3


@pytest.mark.browser
def test_selection_from_the_table_and_from_the_chart(browser):
    browser.find_element("css selector", "tr[data-run-id='4']").click()
    row = browser.find_element("css selector", "tr[data-run-id='4']")
    assert "selected" in row.get_attribute("class")
    assert state(browser)["selected"] == [4] and state(browser)["highlighted"] == [4]
    browser.find_element("css selector", "tr[data-run-id='4']").click()  # toggles off
    assert state(browser)["selected"] == [] and state(browser)["highlighted"] == []
    browser.find_element("id", "ungroup").click()
    # click on run 1's curve (lr 0.1, seed 1: the highest at the last step)
    offset = browser.execute_script(
        "var u = window.mlxpy.explorer.chart(), j = u.data[0].length - 1;"
        "var r = u.over.getBoundingClientRect();"
        "return [u.valToPos(u.data[0][j - 1], 'x') - r.width / 2,"
        "        u.valToPos(u.data[1][j - 1], 'y') - r.height / 2]"
    )
    from selenium.webdriver.common.action_chains import ActionChains

    over = browser.find_element("css selector", "#chart .u-over")
    ActionChains(browser).move_to_element_with_offset(over, *map(int, offset)).click().perform()
    assert state(browser)["selected"] == [1]
    row = browser.find_element("css selector", "tr[data-run-id='1']")
    assert "selected" in row.get_attribute("class")


@pytest.mark.browser
def test_comparison_shows_only_differing_config(browser):
    for log_id in (1, 7):  # lr 0.1 and 1.0, both seed 1
        browser.find_element("css selector", f"tr[data-run-id='{log_id}']").click()
    browser.find_element("id", "compare").click()
    keys = browser.execute_script(
        "return Array.from(document.querySelectorAll('#comparison tr[data-key]'))"
        ".map(tr => tr.dataset.key)"
    )
    config = [k for k in keys if k.startswith("config.")]
    assert config == ["config.lr"]
    assert "train.loss.last" in keys and "info.status" in keys
    heads = browser.execute_script(
        "return Array.from(document.querySelectorAll('#comparison thead th'))"
        ".map(th => th.textContent)"
    )
    assert heads == ["key", "run 1", "run 7"]
    lr = browser.find_element("css selector", "#comparison tr[data-key='config.lr']")
    assert [td.text for td in lr.find_elements("css selector", "td")] == ["0.1", "1"]
    shot(browser, "report-comparison.png", "comparison-panel")


@pytest.mark.browser
def test_readme_screenshot(browser):
    """The README's picture: the grouped curves over the run table, one run selected."""
    from selenium.webdriver.common.action_chains import ActionChains

    browser.find_element("css selector", "tr[data-run-id='8']").click()
    # the pointer off the table: no curve focused by hovering a row
    ActionChains(browser).move_to_element(browser.find_element("id", "title")).perform()
    browser.set_window_size(1280, 1150)
    browser.execute_script("window.dispatchEvent(new Event('resize'))")
    browser.execute_script("return new Promise(r => setTimeout(r, 300))")
    browser.execute_script("window.scrollTo(0, 0)")
    shot(browser, "report-readme.png")  # copied by hand to docs/images/report.png
