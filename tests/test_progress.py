"""The live line of a page run: the cell, the cell's own progress bar from run.log, and elapsed time."""

from __future__ import annotations

import io
import re

import nbformat

from selfaware.progress import PageWatch, clock, last_progress_line


def _notebook(code_cells: int):
    cells = [nbformat.v4.new_markdown_cell("# a page")]
    cells += [nbformat.v4.new_code_cell(f"x = {i}") for i in range(code_cells)]
    return nbformat.v4.new_notebook(cells=cells)


def test_the_newest_bar_state_is_read_through_carriage_returns():
    log = ("[IPKernelApp] WARNING | Kernel is running over TCP\n"
           "LoRA risk-toward-s0:  10%|#         | 1/10 [00:01<00:09, 1.0 s/it, loss=2.1]\r"
           "LoRA risk-toward-s0:  20%|##        | 2/10 [00:02<00:08, 1.0 s/it, loss=1.9]\r")
    assert last_progress_line(log).endswith("2/10 [00:02<00:08, 1.0 s/it, loss=1.9]")
    assert last_progress_line("a warning without a bar\n") == ""
    assert clock(65) == "1:05" and clock(3725) == "1:02:05"


def test_a_live_watch_shows_cell_k_of_n_and_the_training_bar(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("an old run's line 5/5 |#####|\n")  # what was there before the page started is not shown
    stream = io.StringIO()
    watch = PageWatch("[1/2] 01_multiple_choice-risk", log, expected_seconds=600, stream=stream, live=True,
                      interval=3600)
    notebook = _notebook(4)
    watch.begin(notebook)
    for cell in notebook.cells[:3]:
        watch.cell_start(cell)
    with log.open("a") as handle:
        handle.write("Scoring prompts:  50%|#####     | 8/16 [00:04<00:04]\r")
    line = watch.line()
    # the elapsed time is whatever a loaded machine took to get here
    assert re.match(r"\[1/2\] 01_multiple_choice-risk: cell 2/4  \d+:\d\d \(last run 10:00\)", line), line
    assert line.endswith("8/16 [00:04<00:04]") and "old run" not in line
    watch.close()


def test_off_a_terminal_each_finished_cell_is_one_plain_line(tmp_path):
    stream = io.StringIO()
    watch = PageWatch("03_vulnerable_code", tmp_path / "run.log", stream=stream, live=False)
    notebook = _notebook(2)
    watch.begin(notebook)
    for cell in notebook.cells:
        watch.cell_start(cell)
        watch.cell_complete(cell)
    watch.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("  03_vulnerable_code: cell 1/2 done in ")
    assert "\r" not in stream.getvalue()
