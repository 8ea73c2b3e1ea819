"""A page run you can watch: one live line per page in the terminal, the whole story in run.log.

papermill runs a page's notebook through :class:`WatchedEngine`, papermill's own nbclient engine with two
additions: the kernel's standard error and output go to the page's ``run.log`` (the kernel's start-up
warnings included, so none reach the terminal or the page), and each cell's start and end are reported to
a :class:`PageWatch`. On a terminal the watch redraws one line a second: the page, the current cell (k of
N code cells), that cell's own progress (the last progress-bar line the kernel wrote to ``run.log``:
training step and loss, prompts scored, games played), the elapsed time, the estimate from the page's plan
(``selfaware.estimate``: ``est. 12:34``, or why there is none yet on this machine) and, when the page ran
before, how long it took then. When output is not a terminal (CI, a log file) it prints the estimate and
the last run's time once as the page starts, then one plain line per finished cell, with the cell's seconds.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

ENGINE = "selfaware"
_BAR = re.compile(r"\d+/\d+|\d+%|it/s|s/it")


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def last_progress_line(text: str) -> str:
    """The newest progress-bar state in a log tail: tqdm redraws with carriage returns, so the last
    piece between \\r or \\n separators that looks like a bar."""
    for piece in reversed(re.split(r"[\r\n]", text)):
        piece = piece.strip()
        if piece and _BAR.search(piece):
            return piece
    return ""


class PageWatch:
    """Reports one page's progress; see the module docstring. ``expected_seconds``: the page's previous
    run time, shown as a guide (None when it never ran); ``estimate``: the estimate from the page's plan as
    it is shown (``est. 12:34``, or ``no estimate: <why>``; ``selfaware.estimate``), empty for none."""

    def __init__(self, label: str, log: Path, expected_seconds: float | None = None,
                 stream: TextIO | None = None, live: bool | None = None, interval: float = 1.0,
                 estimate: str = ""):
        self.label = label
        self.log = Path(log)
        self.expected = expected_seconds
        self.estimate = estimate
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self.started = time.time()
        self.cell_started = self.started
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        self.tail = ""
        self.code_cells = 0
        self.position = 0  # code cells begun
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- papermill's callbacks -------------------------------------------------------------------------
    def guide(self) -> str:
        """The estimate and the last run's time, as the line shows them: ``(est. 12:34, last run 11:58)``."""
        parts = [self.estimate] if self.estimate else []
        parts += [f"last run {clock(self.expected)}"] if self.expected else []
        return f"({', '.join(parts)})" if parts else ""

    def begin(self, notebook) -> None:
        self.code_cells = sum(cell.cell_type == "code" for cell in notebook.cells)
        if not self.live and self.guide():
            print(f"  {self.label}: {self.code_cells} code cells {self.guide()}", file=self.stream, flush=True)
        if self.live:
            self._thread = threading.Thread(target=self._redraw_loop, daemon=True)
            self._thread.start()

    def cell_start(self, cell) -> None:
        if cell.cell_type == "code":
            self.position += 1
            self.cell_started = time.time()

    def cell_complete(self, cell) -> None:
        if cell.cell_type == "code" and not self.live:
            print(f"  {self.label}: cell {self.position}/{self.code_cells} done in "
                  f"{time.time() - self.cell_started:.1f} s (page {clock(time.time() - self.started)})",
                  file=self.stream, flush=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    # ---- the live line ---------------------------------------------------------------------------------
    def _read_log(self) -> None:
        try:
            with self.log.open("rb") as handle:
                handle.seek(self.offset)
                new = handle.read()
        except OSError:
            return
        if new:
            self.offset += len(new)
            self.tail = (self.tail + new.decode("utf-8", "replace"))[-4000:]

    def line(self) -> str:
        self._read_log()
        elapsed = time.time() - self.started
        guide = self.guide()
        inner = last_progress_line(self.tail)
        text = f"{self.label}: cell {self.position}/{self.code_cells}  {clock(elapsed)}"
        text += f" {guide}" if guide else ""
        return f"{text}  {inner}" if inner else text

    def _redraw_loop(self) -> None:
        while not self._stop.wait(self.interval):
            width = shutil.get_terminal_size((120, 20)).columns
            self.stream.write("\r\x1b[K" + self.line()[:width - 1])
            self.stream.flush()


class WatchedEngine(NBClientEngine):
    """papermill's nbclient engine, with the kernel's stderr and stdout in ``kernel_log`` and cell events
    sent to ``watch``; everything else as papermill does it."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                 start_timeout=60, execution_timeout=None, watch: PageWatch | None = None,
                                 kernel_log: Path | None = None, **kwargs):
        if watch is not None:
            started, completed = nb_man.cell_start, nb_man.cell_complete

            def cell_start(cell, cell_index=None, **more):
                watch.cell_start(cell)
                return started(cell, cell_index, **more)

            def cell_complete(cell, cell_index=None, **more):
                result = completed(cell, cell_index, **more)
                watch.cell_complete(cell)
                return result

            nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
            watch.begin(nb_man.nb)
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                             kernel_name=kernel_name, log=logger, log_output=log_output, stdout_file=stdout_file,
                             stderr_file=stderr_file)
        client = PapermillNotebookClient(nb_man, **final)
        if kernel_log is None:
            return client.execute()
        with open(kernel_log, "ab") as handle:  # the kernel process writes here, not to our terminal
            return client.execute(stdout=handle, stderr=handle)


papermill_engines.register(ENGINE, WatchedEngine)
