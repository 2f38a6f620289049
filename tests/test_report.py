"""``nasforge report``: the HTML page of search and bench directories, live pages and TensorBoard scalars."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

import nasforge as nf
from nasforge.bench import make_spec, run_bench
from nasforge.cli import main
from nasforge.report.build import report_html, write_reports
from nasforge.report.live import LiveReport, tensorboard_scalars
from nasforge.testing.tables import write_nb201_table


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished policy search (snapshots), a search stopped half-way and a small bench, on a fake NB201 table."""
    tmp = tmp_path_factory.mktemp("report")
    table = str(write_nb201_table(tmp / "t.csv"))
    base = nf.RunConfig(space="nb201", evaluator="tabular", benchmark=table, budget=40, strategy="reinforce")
    nf.search(base, tmp / "policy")

    def stop(trial, record) -> None:
        if record.n_evaluations == 8:
            raise _Stop

    with pytest.raises(_Stop):
        nf.search(nf.RunConfig(space="nb201", evaluator="tabular", benchmark=table, budget=30, strategy="re"),
                  tmp / "half", callbacks=[stop])
    spec = make_spec(nf.RunConfig(space="nb201", evaluator="tabular", benchmark=table, budget=20, strategy="rs"),
                     ["rs", "re"], [0, 1])
    run_bench(spec, tmp / "bench")
    return {"policy": tmp / "policy", "half": tmp / "half", "bench": tmp / "bench", "tmp": tmp}


def _self_contained(text: str) -> None:
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:|//)", text), "the page fetches something"
    assert "<script" not in text and "<link" not in text


def test_search_report(runs: dict[str, Path]) -> None:
    [path] = write_reports([runs["policy"]])
    assert path == runs["policy"] / "report.html"
    text = path.read_text()
    _self_contained(text)
    for anchor in ("overview", "incumbent", "evaluations", "top", "strategy", "failures", "config"):
        assert f"id='{anchor}'" in text, anchor
    # answer + 10 top diagrams (each an inline svg) + 2 incumbent plots + scatter + entropy
    assert text.count("<svg") >= 15
    assert text.count("data:image/png;base64,") >= 2  # the policy heatmaps and the sampling histograms
    assert "http-equiv='refresh'" not in text  # finished: the page no longer reloads
    assert "3,101,466" in text or re.search(r"\d{1,3},\d{3},\d{3}</td>", text)  # parameters counted
    assert "reinforce" in text and "nasforge_version" in text


def test_a_running_search_reloads_and_a_pareto_front_is_drawn(runs: dict[str, Path]) -> None:
    half = runs["half"]
    result = json.loads((half / "result.json").read_text())
    assert not result["complete"]
    result["pareto_front"] = [{"arch": h["arch"], "reward": h["reward"], "params": 1000.0 * k}
                              for k, h in enumerate(result["history"][:3])]
    # a one-shot search's derivation, retrained (the fields `nasforge derive --retrain-top` writes)
    candidates = [{"arch": h["arch"], "score": 50.0 + k, "retrained": 60.0 + (k * 7) % 5}
                  for k, h in enumerate(result["history"][:5])]
    result["derived"] = {"sampled_best": {"arch": candidates[4]["arch"], "score": 54.0},
                         "retrained": {"epochs": 1, "candidates": candidates},
                         "retrained_best": {"arch": candidates[3]["arch"], "score": 64.0}}
    (half / "result.json").write_text(json.dumps(result))
    text = report_html(half, live_seconds=7)
    assert "http-equiv='refresh' content='7'" in text and "8 of 30 evaluations, running" in text
    assert "Pareto front (3 architectures)" in text and "id='pareto'" in text
    assert "Answer (derived from the policy)" in text and "best after retraining" in text
    assert "ranking vs retraining (Kendall tau" in text


def test_bench_report_and_side_by_side(runs: dict[str, Path], tmp_path: Path) -> None:
    [path] = write_reports([runs["bench"]])
    text = path.read_text()
    _self_contained(text)
    for title in ("Curves", "Incumbent test accuracy at each budget", "Overhead of the strategies"):
        assert title in text
    assert re.search(r"\((\d)/2 found\)", text)  # found counts, never a misleading percentage
    assert "@20" in text and "can dip" in text
    both = tmp_path / "both.html"
    assert write_reports([runs["bench"], runs["half"]], both) == [both]
    page = both.read_text()
    assert page.count("class='column'><h2>") == 2 and "Curves" in page and "Top 8" in page


def test_report_command_errors(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "neither a search run directory" in capsys.readouterr().err
    assert main(["report", str(runs["half"]), "--out", str(tmp_path / "no" / "x.html")]) == 2
    assert main(["report", str(runs["bench"]), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_live_report_rewrites_seldom(runs: dict[str, Path], tmp_path: Path) -> None:
    now = [0.0]
    live = LiveReport(runs["half"], tmp_path / "live.html", every_s=5, clock=lambda: now[0])
    live(None, None)
    assert live.writes == 1 and "http-equiv='refresh' content='5'" in (tmp_path / "live.html").read_text()
    now[0] = 4.0
    live(None, None)
    assert live.writes == 1  # not before every_s
    now[0] = 5.5
    live.write(final=True)
    assert live.writes == 2 and "http-equiv='refresh'" not in (tmp_path / "live.html").read_text()
    live(None, None)
    assert live.writes == 2  # the next one waits every_s again


def test_search_report_flag(tmp_path: Path) -> None:
    table = write_nb201_table(tmp_path / "t.csv")
    out = tmp_path / "run"
    assert main(["search", "--space", "nb201", "--benchmark", str(table), "--strategy", "rs", "--budget", "6",
                 "--out", str(out), "--report"]) == 0
    text = (out / "report.html").read_text()
    assert "6 of 6 evaluations, finished" in text and "http-equiv='refresh'" not in text


def test_tensorboard_scalars_or_a_clear_skip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tb = tensorboard_scalars(tmp_path)
    if importlib.util.find_spec("tensorboard") is None:
        assert tb is None
        assert "pip install 'nasforge[tensorboard]'" in caplog.text
        return
    assert tb is not None
    config = nf.RunConfig(space="nb201", evaluator="tabular", benchmark=str(write_nb201_table(tmp_path / "t.csv")),
                          budget=5, strategy="rs")
    nf.search(config, callbacks=[tb])
    tb.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


# ---------------------------------------------------------------------- in a real browser
def _chromium() -> tuple[str, str]:
    """Paths of a Chromium and its driver, or skip saying what is missing."""
    import shutil

    if importlib.util.find_spec("selenium") is None:
        pytest.skip("selenium is not installed (pip install 'nasforge[browser]')")
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("no Chromium with chromedriver found (apt-get install chromium chromium-driver)")
    return browser, driver


def test_report_renders_in_a_browser(runs: dict[str, Path], tmp_path: Path) -> None:
    browser, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    page = runs["policy"] / "report.html"  # written by test_search_report, unless it runs alone
    if not page.exists():
        write_reports([runs["policy"]])
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(page.resolve().as_uri())
        assert driver.title.startswith("nasforge search")
        figures = driver.execute_script(
            "return Array.from(document.querySelectorAll('.figure > svg')).map(e => {"
            "const r = e.getBoundingClientRect(); return [r.width, r.height, e.querySelectorAll('path,text').length];})")
        assert len(figures) >= 15, f"{len(figures)} inline SVG figures rendered"
        small = [f for f in figures if f[0] < 100 or f[1] < 50 or f[2] < 5]
        assert not small, f"figures rendered empty or tiny (width, height, elements): {small}"
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);")
        assert len(images) >= 2 and all(ok and w > 100 and h > 100 for ok, w, h in images), images
        sections = driver.execute_script("return document.querySelectorAll('section h2').length;")
        assert sections >= 7
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        driver.execute_script("console.error('probe')")  # the check above can see an error
        assert any("probe" in e["message"] for e in driver.get_log("browser"))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    finally:
        driver.quit()


def test_tensorboard_scalars_of_a_search_and_its_training_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a stand-in SummaryWriter (tensorboard itself is optional): what would be written, and where
    import logging
    import sys
    import types

    written: list[tuple[str, float, int]] = []
    dirs: list[str] = []

    class Writer:
        def __init__(self, log_dir: str) -> None:
            dirs.append(log_dir)

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            written.append((tag, value, step))

        def close(self) -> None:
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    tb = tensorboard_scalars(tmp_path)
    assert tb is not None and not dirs  # no directory until there is something to write
    config = nf.RunConfig(space="nb201", evaluator="tabular", benchmark=str(write_nb201_table(tmp_path / "t.csv")),
                          budget=5, strategy="rs")
    nf.search(config, callbacks=[tb])
    from nasforge.train.loop import Progress

    logging.getLogger("nasforge.train.loop").info("epoch", extra={"train_progress": Progress(1, 2, 3, 3, 0.5, 0.8, 0.1, True)})
    tb.close()
    assert logging.getLogger("nasforge.train.loop").propagate  # the loop's logging as it was
    assert dirs == [str(tmp_path / "tensorboard")]
    assert [s for t, _, s in written if t == "search/reward"] == [1, 2, 3, 4, 5]
    assert {t for t, _, _ in written} >= {"search/incumbent_reward", "search/test_accuracy", "train/loss", "train/lr"}
