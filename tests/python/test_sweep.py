"""`shardq sweep` and `shardq report` on the tiny fixture model, with jobs/examples/sweep_fixture.json
(its 2x2 grid: method rtn|gptq x bits 3|4) pointed at the fixture's model, data and a temporary root:
- --dry-run lists the points with names, state and output URIs derived as sweep_spec.h says
  (expected names built here from the axes);
- a run under mpirun -np 2 appends one whole JSON line per point to results.jsonl, with the fields
  the README lists, output_bytes equal to the files on disk and avg_bits from the formula;
- a rerun skips every recorded point without touching its journal;
- a sweep killed inside its first point (SIGKILL of rank 0 once layer 1 is journaled) resumes that
  point from its journal and ends with the bytes of the uninterrupted sweep;
- report.html rendered by headless Chromium: loads without console errors (checked against a page
  with a planted error), the size plot has one circle per point and the frontier polyline through
  the points that a brute-force Pareto check of the records picks, the table a row per point, and
  clicking a column header sorts the table; --format md has a row per point."""
import hashlib
import itertools
import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from shardq_testlib import ROOT, SHARDQ, calibration_text, make_model, mpirun, run

EXAMPLE = ROOT / "jobs" / "examples" / "sweep_fixture.json"
METHODS = ["rtn", "gptq"]
BITS = [3, 4]
RECORD_FIELDS = {"format", "sweep", "point", "name", "axes", "spec_sha256", "state_uri", "output_uri", "method",
                 "bits", "group_size", "avg_bits", "sparsity", "output_bytes", "evals", "phases", "wall_s", "cpu_s",
                 "layers", "backend", "ranks", "finished"}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    model = make_model(tmp / "model", "--layers", "4", "--hidden", "64", "--intermediate", "128", "--heads", "4",
                       "--kv-heads", "2", "--vocab", "512", "--seed", "3")
    return {"tmp": tmp, "model": model, "calib": calibration_text(tmp)}


def sweep_file(work, root_name):
    """The example sweep with the fixture's model and data and its own root."""
    sweep = json.loads(EXAMPLE.read_text())
    sweep["root"] = str(work["tmp"] / root_name)
    sweep["base"]["model"] = str(work["model"])
    sweep["base"]["data"]["calibration"] = str(work["calib"])
    sweep["base"]["steps"][1]["eval"]["data"] = str(work["calib"])
    path = work["tmp"] / f"{root_name}.json"
    path.write_text(json.dumps(sweep, indent=1))
    return path, Path(sweep["root"]), sweep["name"]


def expected_names(sweep_name):
    return [f"{sweep_name}-method{m}-bits{b}" for m, b in itertools.product(METHODS, BITS)]


def read_records(root):
    text = (root / "results.jsonl").read_text()
    assert text.endswith("\n"), "the last record is torn"
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def finished(work):
    path, root, name = sweep_file(work, "grid")
    proc = mpirun(2, ["sweep", path], timeout=300)
    return {"path": path, "root": root, "name": name, "log": proc.stderr}


def test_dry_run_lists_derived_points(work):
    path, root, name = sweep_file(work, "dry")
    proc = run([SHARDQ, "sweep", path, "--dry-run"])
    rows = [line.split("\t") for line in proc.stdout.splitlines() if not line.startswith("#")]
    assert [r[1] for r in rows] == expected_names(name)
    for i, (row, (method, bits)) in enumerate(zip(rows, itertools.product(METHODS, BITS))):
        assert row[0] == str(i) and row[2] == "todo"
        assert json.loads(row[3]) == {"method": method, "bits": bits}
        assert row[4] == str(root / "points" / row[1] / "state")
        assert row[5] == str(root / "points" / row[1] / "output")
    assert not root.exists(), "a dry run writes nothing"


def test_bad_axis_path_names_the_axis(work):
    path, _, _ = sweep_file(work, "bad")
    sweep = json.loads(path.read_text())
    sweep["axes"][1]["path"] = "steps[5].gptq.bits"
    path.write_text(json.dumps(sweep))
    proc = run([SHARDQ, "sweep", path, "--dry-run"], check=False)
    assert proc.returncode == 1
    assert "axes[1] (bits): steps[5].gptq.bits: steps[5] does not exist (the list has 2 items)" in proc.stderr


def test_one_record_per_point(work, finished):
    records = read_records(finished["root"])
    assert [r["name"] for r in records] == expected_names(finished["name"])
    for i, (record, (method, bits)) in enumerate(zip(records, itertools.product(METHODS, BITS))):
        assert set(record) == RECORD_FIELDS
        assert record["format"] == "shardq-sweep-record/1" and record["point"] == i and record["ranks"] == 2
        assert record["axes"] == {"method": method, "bits": bits}
        assert (record["method"], record["bits"], record["group_size"]) == (method, bits, 32)
        # codes plus an fp16 scale and a bits-wide zero per group of 32 inputs
        assert record["avg_bits"] == pytest.approx(bits + (16 + bits) / 32)
        output = Path(record["output_uri"])
        assert record["output_bytes"] == sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
        assert [e["step"] for e in record["evals"]] == [1] and record["evals"][0]["ppl"] > 1
        assert [(p["step"], p["kind"]) for p in record["phases"]] == [(0, method), (1, "eval")]
        journal = json.loads((Path(record["state_uri"]) / "journal.json").read_text())
        assert [(p["wall_s"], p["cpu_s"]) for p in record["phases"]] == \
            [(pytest.approx(s["wall_s"]), pytest.approx(s["cpu_s"])) for s in journal["steps"]]
        assert all(p["wall_s"] > 0 and p["cpu_s"] >= 0 for p in record["phases"])
        assert record["wall_s"] == pytest.approx(sum(p["wall_s"] for p in record["phases"]))
        assert [layer["layer"] for layer in record["layers"]] == [0, 1, 2, 3]
        assert record["sparsity"] == 0


def test_rerun_skips_finished_points(finished):
    journals = sorted(finished["root"].glob("points/*/state/journal.json"))
    before = {p: p.stat().st_mtime_ns for p in journals}
    lines = (finished["root"] / "results.jsonl").read_text()
    proc = mpirun(2, ["sweep", finished["path"]], timeout=300)
    assert proc.stderr.count(", skipped") == 4
    assert (finished["root"] / "results.jsonl").read_text() == lines
    assert {p: p.stat().st_mtime_ns for p in journals} == before


def test_killed_point_resumes(work, finished):
    path, root, name = sweep_file(work, "killed")
    killed = mpirun(2, ["sweep", path], env={"SHARDQ_FAULT": "after-journal:1"}, check=False, timeout=300)
    assert killed.returncode != 0
    assert not (root / "results.jsonl").exists() or (root / "results.jsonl").read_text() == ""
    resumed = mpirun(2, ["sweep", path], timeout=300)
    assert re.search(r"layer 1/4 replayed from the journal", resumed.stderr), resumed.stderr
    assert [r["name"] for r in read_records(root)] == expected_names(name)
    for point in expected_names(name):
        ours = hashlib.sha256((root / "points" / point / "output" / "model.safetensors").read_bytes()).hexdigest()
        theirs = hashlib.sha256((finished["root"] / "points" / point / "output" / "model.safetensors")
                                .read_bytes()).hexdigest()
        assert ours == theirs, point


class ReportParser(HTMLParser):
    """Counts what the report's DOM holds: plot circles, the frontier polyline, labels, table rows."""

    def __init__(self):
        super().__init__()
        self.svg = None
        self.circles, self.polylines, self.labels = {}, {}, {}
        self.in_label = False
        self.table = None
        self.rows = {}
        self.cells = []  # data-value of each #results body cell, row by row

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.svg = a.get("id")
        elif tag == "circle" and "point" in a.get("class", "").split():
            self.circles[self.svg] = self.circles.get(self.svg, 0) + 1
        elif tag == "polyline" and a.get("class") == "frontier":
            self.polylines.setdefault(self.svg, []).append(a["points"])
        elif tag == "text" and a.get("class") == "frontier-label":
            self.in_label = True
        elif tag == "table":
            self.table = a.get("id")
        elif tag == "tr" and self.table:
            self.rows[self.table] = self.rows.get(self.table, 0) + 1
            if self.table == "results":
                self.cells.append([])
        elif tag == "td" and self.table == "results":
            self.cells[-1].append(a.get("data-value"))

    def handle_endtag(self, tag):
        if tag == "svg":
            self.svg = None
        elif tag == "text":
            self.in_label = False
        elif tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.in_label:
            self.labels.setdefault(self.svg, []).append(data)


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("chromium is not installed (apt-get install chromium; listed in .ci/packages.txt)")


def render(browser, page, tmp):
    """(DOM after scripts ran, console error lines, PNG bytes) of a page in headless Chromium."""
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp / "profile"),
              "--window-size=1200,2400"]
    url = page.resolve().as_uri()
    dom = subprocess.run(common + ["--enable-logging=stderr", "--v=0", "--dump-dom", url], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    png = tmp / (page.stem + ".png")
    shot = subprocess.run(common + ["--screenshot=" + str(png), url], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and png.exists(), shot.stderr
    return dom.stdout, console, png.read_bytes()


def png_ink(data):
    """(width, height, fraction of non-white bytes of the decoded scanlines) of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    return width, height, sum(1 for b in raw[::7] if b != 0xFF) / len(raw[::7])


def pareto_brute_force(points):
    """Names of the records no other record beats on both size and perplexity."""
    return {n for n, x, y in points
            if not any(x2 <= x and y2 <= y and (x2 < x or y2 < y) for _, x2, y2 in points)}


def test_report_renders_in_chromium(work, finished, tmp_path):
    browser = chromium()
    # The console check can fail: a page with a planted script error is caught.
    planted = tmp_path / "planted.html"
    planted.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    _, console, _ = render(browser, planted, tmp_path)
    assert any("undefinedFunction" in line for line in console), console

    report = tmp_path / "report.html"
    run([SHARDQ, "report", finished["root"] / "results.jsonl", "-o", report])
    text = report.read_text()
    assert not re.search(r"(src|href)=\"?https?:", text), "the report must not load anything from the network"
    dom, console, png = render(browser, report, tmp_path)
    assert console == []
    page = ReportParser()
    page.feed(dom)
    records = read_records(finished["root"])
    assert page.circles == {"size-plot": 4, "bits-plot": 4}
    assert list(page.polylines) == ["size-plot"] and len(page.polylines["size-plot"]) == 1
    frontier = pareto_brute_force([(r["name"], r["output_bytes"], r["evals"][0]["ppl"]) for r in records])
    assert set(page.labels["size-plot"]) == frontier
    assert len(page.polylines["size-plot"][0].split()) == len(frontier)
    assert page.rows["results"] == 1 + len(records)  # the header row and one per point
    assert page.rows["layer-table"] == 1 + 4
    width, height, ink = png_ink(png)
    assert (width, height) == (1200, 2400) and ink > 0.01, "the screenshot is blank"


def test_table_sorts_on_click(finished, tmp_path):
    """The inline script sorts the table: copies of the page click the perplexity header once
    (ascending) and twice (descending); no order of the rows satisfies both unless it sorts."""
    browser = chromium()
    report = tmp_path / "report.html"
    run([SHARDQ, "report", finished["root"] / "results.jsonl", "-o", report])
    ppl = sorted(r["evals"][0]["ppl"] for r in read_records(finished["root"]))
    assert ppl[0] != ppl[-1]
    click = ("Array.from(document.querySelectorAll('#results th')).find(th => th.textContent === 'perplexity')"
             ".click();")
    for clicks, expected, order in ((1, ppl, "ascending"), (2, ppl[::-1], "descending")):
        page_file = tmp_path / f"clicked{clicks}.html"
        page_file.write_text(report.read_text().replace("</body>", f"<script>{click * clicks}</script></body>"))
        dom, console, _ = render(browser, page_file, tmp_path)
        assert console == []
        page = ReportParser()
        page.feed(dom)
        column = 7  # point, name, method, bits, group, avg bits, sparsity, perplexity
        assert [float(row[column]) for row in page.cells[1:]] == expected
        assert f'aria-sort="{order}"' in dom


def test_report_markdown(finished, tmp_path):
    out = tmp_path / "report.md"
    run([SHARDQ, "report", finished["root"] / "results.jsonl", "-o", out, "--format", "md"])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 4
    assert [row.split("|")[2].strip().strip("*") for row in rows[1:]] == expected_names(finished["name"])
