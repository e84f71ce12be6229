"""The report: verdict wording, Markdown, and report.html rendered by headless Chromium.

The page test evaluates the real bundled model ("base") and a copy with noise
added to its last layer ("tuned", so some queries gain and some lose) on the
tiny corpus, writes the three report files, then opens ``report.html`` in
headless Chromium: every plot must decode (``naturalWidth > 0``) and be laid
out at a readable size, and the screenshot must show a real page, not a blank
one. Set ``RAGTUNE_SCREENSHOT=/some/file.png`` to keep the screenshot.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ragtune.evaluation import RetrievalDataset, RetrievalEvaluator
from ragtune.report import build_report, write_report
from ragtune.report.facts import fmt_seconds, stage_rows, summary_rows
from ragtune.report.html import render_html
from ragtune.report.markdown import render_markdown, verdict, verdicts

# question → a phrase found only in the chunk that answers it
QUESTIONS = {
    "How often does the night tram run?": "every 30 minutes",
    "What does a monthly pass cost?": "58 euros",
    "Where is the tram fleet maintained?": "Eastfield depot",
    "Can I bring my bike on the tram?": "Bicycles can be taken",
    "Who drove the first tram at the opening?": "mayor drove the first tram",
    "How long is lost property kept?": "30 days",
    "How much is a single ticket?": "2.40 euros",
    "Do small children pay a fare?": "Children under six",
    "How many wheelchair spaces does a tram have?": "two wheelchair spaces",
    "When was the line extended to Lighthouse Point?": "In 2011",
    "How many technicians work at the depot?": "Forty-two technicians",
    "What is the Sunday daytime interval?": "on Sundays it is 10 minutes",
    "When does the first tram leave in the morning?": "05:12",
    "Is there a park-and-ride?": "park-and-ride",
    "When did the line open?": "14 May 1998",
    "How often are trams inspected?": "5,000 kilometres",
    "Where can I buy tickets?": "Tickets are sold",
    "What do I press to request a stop?": "yellow button",
    "How often are the wheels re-turned?": "underfloor lathe",
    "Who trains new drivers?": "training school",
    "What happens to items nobody collects?": "donated",
    "Are the platforms step-free?": "level with the tram floor",
}

# what run.json records for the other stages, in the pipeline's shape
STAGE_RECORDS = {
    "pairs": {"chunks": 9, "windows": 31, "generated": 120, "kept": 96, "dropped": {"length": 4, "duplicates": 20},
              "by_kind": {"offline:question": 50, "offline:keyphrase": 46}, "train": 86, "val": 10, "seconds": 1.2},
    "training": {"steps": 12, "train_pairs": 86, "dims": [384, 128, 64], "max_seq_length": 128, "precision": "fp32",
                 "trainable_params": 1_179_648, "total_params": 22_713_216, "resumed_from": None,
                 "train_loop_s": 30.5, "seconds": 31.0},
    "index": {"location": "/tmp/run/qdrant", "collection": "ragtune", "points": 9, "dim": 384, "seconds": 2.0},
}
TIMINGS = {"chunks_s": 0.8, "pairs_s": 1.2, "train_s": 31.0, "index_s": 2.0, "evaluate_s": 9.5}


def perturbed(model, scale: float = 1.0, seed: int = 1):
    """A copy of ``model`` with seeded noise on its last transformer layer: a stand-in "tuned" model."""
    import torch

    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m[0].auto_model.encoder.layer[-1].parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.std())
    return m


@pytest.fixture(scope="module")
def tiny_eval(tiny_chunks, st_model):
    """(dataset, results) for base, tuned and their long-chunk variants at three dimensions."""
    queries, relevant = {}, {}
    for i, (q, needle) in enumerate(QUESTIONS.items()):
        queries[f"q{i:02d}"] = q
        relevant[f"q{i:02d}"] = {c.id: 1 for c in tiny_chunks if needle in c.text}
    dataset = RetrievalDataset("tiny tram corpus", queries, {c.id: c.text for c in tiny_chunks}, relevant,
                               kind="custom", info={"description": "hand-written questions about one tram line"})
    tuned = perturbed(st_model)
    results = {}
    for label, model, long in (("base", st_model, False), ("tuned", tuned, False),
                               ("base+long", st_model, True), ("tuned+long", tuned, True)):
        results[label] = RetrievalEvaluator(dataset, dims=[384, 128, 64], long_chunks=long)(model, label)
    return dataset, results


@pytest.fixture(scope="module")
def written(tiny_eval, tmp_path_factory):
    dataset, results = tiny_eval
    report = build_report(dataset, results, {"base": "all-MiniLM-L6-v2", "tuned": "perturbed copy"},
                          timings=TIMINGS, extra=STAGE_RECORDS)
    report["ragas"] = {"base": {"id_context_precision@5": 0.19, "id_context_recall@5": 0.95},
                       "tuned": {"id_context_precision@5": 0.18, "id_context_recall@5": 0.9}}
    out = tmp_path_factory.mktemp("report")
    paths = write_report(report, out)
    return report, paths


# ---------------------------------------------------------------- record and files


def test_report_record_has_per_query_values_and_examples(written, tiny_eval):
    _, paths = written
    _, results = tiny_eval
    on_disk = json.loads(paths["json"].read_text())
    pq = on_disk["per_query"]
    assert pq["metric"] == "ndcg@10" and len(pq["qids"]) == len(QUESTIONS)
    assert set(pq["labels"]) == {"base", "tuned", "base+long", "tuned+long"}
    assert np.allclose(pq["labels"]["tuned"]["values"], results["tuned"].per_query["384"]["ndcg@10"], atol=1e-4)
    assert on_disk["dataset"]["info"]["description"].startswith("hand-written")
    ex = on_disk["examples"]
    diff = results["tuned"].per_query["384"]["ndcg@10"] - results["base"].per_query["384"]["ndcg@10"]
    assert len(ex["gained"]) == min(5, int((diff > 0).sum()))
    assert len(ex["lost"]) == min(5, int((diff < 0).sum()))


def test_html_is_self_contained(written):
    report, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    # nothing is fetched: no scripts, no stylesheets or fonts or images from elsewhere
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//)""", page), "external resource in report.html"
    assert "@import" not in page and "url(" not in page
    imgs = re.findall(r"<img [^>]*src='data:image/png;base64,", page)
    assert len(imgs) == 4  # before/after bars, differences, per-query change, quality vs dimension
    d = report["comparison"]["tuned-base"]["384"]["ndcg@10"]
    assert f"{d['mean_diff']:+.3f}" in page and f"{d['ci_low']:+.3f} to {d['ci_high']:+.3f}" in page
    for heading in ("Summary", "Plots", "Time and cost per stage", "Dataset and models", "RAG quality (ragas)"):
        assert f">{heading}</h2>" in page, heading
    assert "12 steps over 86 pairs" in page and "trainable parameters: 1,179,648 of 22,713,216 (5.2%)" in page


def test_markdown_states_verdict_summary_and_stage_costs(written):
    report, paths = written
    md = paths["md"].read_text(encoding="utf-8")
    assert verdict(report) in md
    d = report["comparison"]["tuned-base"]["384"]["ndcg@10"]
    ndcg_row = next(line for line in md.splitlines() if line.startswith("| ndcg@10 |"))
    assert f"{d['mean_diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" in ndcg_row
    assert "| train | 31 s | 70% |" in md
    assert "dropped: length 4, duplicates 20" in md
    assert "| base | 0.190 | 0.950 |" in md  # the ragas table


# ---------------------------------------------------------------- the page in a browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
)
# Records, once the page has loaded, each image's decoded and laid-out size and the page height
# on <html data-probe=...>, which --dump-dom then prints. Only a copy of the page gets it.
PROBE = """<script>addEventListener('load', () => document.documentElement.setAttribute('data-probe', JSON.stringify({
  images: [...document.images].map(i => [i.naturalWidth, i.naturalHeight, i.clientWidth, i.clientHeight]),
  height: document.documentElement.scrollHeight})));</script>"""


def chromium() -> str:
    path = os.environ.get("RAGTUNE_CHROMIUM") or next((p for b in BROWSERS if (p := shutil.which(b))), None)
    if not path:
        pytest.skip("no Chromium found (apt-get install chromium, or set RAGTUNE_CHROMIUM=/path/to/chrome)")
    return path


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # fresh profile per launch
    proc = subprocess.run([chromium(), *CHROME_FLAGS, f"--user-data-dir={profile}", *args],
                          check=False, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
    return proc


def test_report_html_renders_with_visible_plots(written, tmp_path):
    from PIL import Image

    _, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = run_chromium(tmp_path, "--dump-dom", "--virtual-time-budget=10000", "--window-size=1280,1000",
                       probe_page.as_uri()).stdout
    m = re.search(r'<html[^>]*data-probe="([^"]+)"', dom)
    assert m, f"the page never finished loading:\n{dom[:500]}"
    probe = json.loads(m.group(1).replace("&quot;", '"'))
    assert len(probe["images"]) == 4
    for natural_w, natural_h, shown_w, shown_h in probe["images"]:
        assert natural_w > 300 and natural_h > 100, "a plot did not decode"
        assert shown_w > 600 and shown_h > 150, "a plot is laid out too small to read"

    shot = tmp_path / "report.png"
    height = min(max(int(probe["height"]), 1000), 16000)
    run_chromium(tmp_path, f"--screenshot={shot}", f"--window-size=1280,{height}", paths["html"].as_uri())
    assert shot.stat().st_size > 100_000
    with Image.open(shot) as im:
        assert im.size == (1280, height)
        grey = np.asarray(im.convert("L"), dtype=np.float32)
        colours = len(set(im.convert("RGB").resize((320, height // 4)).getdata()))
    assert grey.std() > 10, "the screenshot is (nearly) one colour"
    assert colours > 200, "the screenshot has too few colours to hold plots"
    # every band of the page holds something: no blank half from a broken layout
    bands = np.array_split(grey, 8)
    assert all((band < 200).mean() > 0.002 for band in bands)
    if keep := os.environ.get("RAGTUNE_SCREENSHOT"):
        shutil.copyfile(shot, keep)


# ---------------------------------------------------------------- verdict and rendering of odd reports


def _comp(mean: float, lo: float, hi: float, p: float = 0.04, n: int = 50) -> dict:
    return {"mean_diff": mean, "ci_low": lo, "ci_high": hi, "confidence": 0.95, "p_value": p, "n_queries": n}


def handcrafted(plain: dict, long: dict | None = None) -> dict:
    metrics = {"base": {"384": {"ndcg@10": 0.5, "hit@5": 0.6}, "64": {"ndcg@10": 0.4, "hit@5": 0.5}},
               "tuned": {"384": {"ndcg@10": 0.5 + plain["mean_diff"], "hit@5": 0.62, "mrr@10": 0.7}, "64": {"ndcg@10": 0.45, "hit@5": 0.55}}}
    comparison = {"tuned-base": {"384": {"ndcg@10": plain}, "64": {"ndcg@10": _comp(0.05, 0.01, 0.09)}}}
    if long is not None:
        comparison["tuned+long-base+long"] = {"384": {"ndcg@10": long}}
    return {"dataset": {"name": "hand", "kind": "custom", "queries": 50, "corpus": 200},
            "models": {"base": "b", "tuned": "t"}, "metrics": metrics, "comparison": comparison}


def test_verdict_states_a_clear_gain_with_its_interval():
    v = verdict(handcrafted(_comp(0.0421, 0.0112, 0.0733, p=0.012)))
    assert v.startswith("Tuning improved nDCG@10 by +0.042 at 384 dims")  # the full dimension, not 64
    assert "95% CI +0.011 to +0.073" in v and "p=0.012" in v and "50 queries" in v
    assert v.endswith("the 95% interval excludes zero.")


def test_verdict_says_when_the_interval_includes_zero():
    v = verdict(handcrafted(_comp(-0.012, -0.040, 0.015, p=0.41)))
    assert v.startswith("Tuning lowered nDCG@10 by -0.012")
    assert "95% CI -0.040 to +0.015" in v
    assert "includes zero: not distinguishable from noise" in v


def test_verdict_for_a_clear_loss_and_for_no_change():
    assert "excludes zero" in verdict(handcrafted(_comp(-0.05, -0.08, -0.02)))
    assert verdict(handcrafted(_comp(0.0, 0.0, 0.0, p=1.0))).startswith("Tuning did not change nDCG@10")


def test_long_chunk_comparison_gets_its_own_sentence():
    vs = verdicts(handcrafted(_comp(0.03, 0.01, 0.05), long=_comp(-0.01, -0.03, 0.01)))
    assert len(vs) == 2
    assert "with long-chunk (best-window) search" in vs[1] and "includes zero" in vs[1]
    assert "long-chunk" not in vs[0]


def test_markdown_of_handcrafted_report():
    md = render_markdown(handcrafted(_comp(0.0421, 0.0112, 0.0733, p=0.012)))
    assert "**Tuning improved nDCG@10 by +0.042" in md
    assert "| ndcg@10 | 0.500 | 0.542 | +0.042 [+0.011, +0.073] |" in md
    assert "| 64 | ndcg@10 | +0.0500 | [+0.0100, +0.0900] | 0.040 |" in md
    assert "| mrr@10 | — | 0.700 |" in md  # a metric one model lacks shows as a dash, not "nan"
    assert "\n| hit@1 |" not in md  # and one no model has is left out of the summary


def test_single_model_report_renders_without_comparison(tiny_eval):
    dataset, results = tiny_eval
    report = build_report(dataset, {"base": results["base"]}, {"base": "all-MiniLM-L6-v2"})
    v = verdict(report)
    assert v.startswith("Only base nDCG@10 = ") and "no base/tuned pair" in v
    assert report["comparison"] == {} and report["examples"] == {}
    page = render_html(report)
    assert "no comparison" in page and "Queries that moved most" not in page
    assert page.count("<img ") == 2  # before/after bars and quality vs dimension; nothing to difference
    md = render_markdown(report)
    assert "## Difference" not in md and v in md


def test_empty_and_escaped_reports():
    page = render_html({})
    assert "No evaluation results" in page and "<img" not in page
    assert "No evaluation results" in render_markdown({})
    nasty = handcrafted(_comp(0.1, 0.05, 0.15))
    nasty["dataset"]["name"] = "<script>alert(1)</script>"
    nasty["examples"] = {"metric": "ndcg@10", "dim": "384", "lost": [], "gained": [
        {"query": "a <b>bold</b> | piped query", "delta": 0.5, "relevant": ["x"], "base_rank": None, "tuned_rank": 1,
         "base_top": "<img src=x>", "tuned_top": "x"}]}
    page = render_html(nasty)
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "<img src=x>" not in page
    assert "No query lost." in page
    assert "a <b>bold</b> \\| piped query" in render_markdown(nasty)


def test_stage_rows_order_shares_and_details():
    rows = stage_rows({"timings": TIMINGS, **STAGE_RECORDS})
    assert [r.name for r in rows] == ["chunks", "pairs", "train", "index", "evaluate"]
    assert sum(r.share for r in rows) == pytest.approx(1.0)
    train = next(r for r in rows if r.name == "train")
    assert train.details[0] == "12 steps over 86 pairs (2.54 s/step)"
    # a stage known only from its record still shows, with the record's time
    only_record = stage_rows({"index": {"points": 10, "dim": 64, "collection": "c", "seconds": 4.0}})
    assert [(r.name, r.seconds) for r in only_record] == [("index", 4.0)]
    assert stage_rows({}) == []


def test_summary_rows_carry_differences_per_metric():
    labels, rows = summary_rows(handcrafted(_comp(0.02, -0.01, 0.05), long=None))
    assert labels == ["base", "tuned"]
    ndcg = next(r for r in rows if r.metric == "ndcg@10")
    assert ndcg.values == {"base": 0.5, "tuned": pytest.approx(0.52)} and ndcg.diffs[0].sign == "zero"
    assert next(r for r in rows if r.metric == "hit@5").diffs == []  # not tested, so no difference shown


@pytest.mark.parametrize("s,text", [(None, "—"), (0.42, "0.4 s"), (42.4, "42 s"), (626.4, "10 min 26 s"), (3725, "1 h 02 min")])
def test_fmt_seconds(s, text):
    assert fmt_seconds(s) == text
