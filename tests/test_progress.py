"""ragtune's one progress display: what library code reports and what each display prints."""

from __future__ import annotations

import io

from ragtune import progress


def test_without_a_display_reporting_is_silent_and_yields_everything(capsys):
    assert list(progress.track(range(3), "Counting")) == [0, 1, 2]
    with progress.task("Working", total=2) as t:
        t.advance(2)
    assert t.completed == 2 and t.finished is not None
    assert capsys.readouterr() == ("", "")


def test_line_display_prints_start_counts_eta_and_done():
    out = io.StringIO()
    with progress.use(progress.LineDisplay(out, interval=0)):
        for _ in progress.track(["a", "b", "c", "d"], "Indexing chunks", unit="batches"):
            pass
        with progress.task("Encoding", total=10, transient=True) as t:
            t.advance(5)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Indexing chunks (4 batches) ..."
    assert any(ln.startswith("Indexing chunks: 2/4 batches (50%)") and "ETA" in ln for ln in lines)
    assert any("4/4 batches (100%)" in ln and ln.endswith("done") for ln in lines)
    # a transient helper step reports progress but no start/end lines of its own
    assert not any(ln.startswith("Encoding (") for ln in lines)
    assert any(ln.startswith("Encoding: 5/10 (50%)") for ln in lines)


def test_line_display_throttles_updates():
    out = io.StringIO()
    with progress.use(progress.LineDisplay(out, interval=3600)):
        for _ in progress.track(range(100), "Steps", unit="steps"):
            pass
    lines = out.getvalue().splitlines()
    assert lines == ["Steps (100 steps) ...", lines[-1]] and "100/100 steps (100%)" in lines[-1]


def test_rich_display_renders_counts_on_a_terminal():
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with progress.use(progress.RichDisplay(console)):
        for _ in progress.track(range(7), "Training steps", unit="steps"):
            pass
    assert "Training steps" in buf.getvalue() and "7/7" in buf.getvalue()


def test_nested_tasks_and_unknown_totals():
    out = io.StringIO()
    with progress.use(progress.LineDisplay(out, interval=0)), progress.task("[3/5] training") as stage:
        for _ in progress.track(iter(range(3)), "Mixes", unit="mixes"):  # no len(): count only
            pass
    text = out.getvalue()
    assert "Mixes: 3 mixes" in text and "[3/5] training: " in text and stage.total is None
