"""The demo's live progress view: a status block redrawn in place on a terminal, plain
lines (no escape codes, at most one status line every few seconds) anywhere else, such as a
CI log. Events and headings scroll above the block in both cases.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import TextIO

BOLD, DIM, RED, GREEN, YELLOW, CYAN, RESET = (
    "\x1b[1m",
    "\x1b[2m",
    "\x1b[31m",
    "\x1b[32m",
    "\x1b[33m",
    "\x1b[36m",
    "\x1b[0m",
)


class LiveView:
    def __init__(
        self,
        out: TextIO | None = None,
        *,
        tty: bool | None = None,
        plain_interval: float = 5.0,
    ) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.color = self.tty and not os.environ.get("NO_COLOR")
        self.plain_interval = plain_interval
        self._block = 0
        self._last_plain = 0.0
        self._last_key: str | None = None

    def paint(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        return "".join(styles) + text + RESET

    def _clear_block(self) -> None:
        if self.tty and self._block:
            self.out.write(f"\x1b[{self._block}F\x1b[J")
            self._block = 0

    def line(self, text: str = "") -> None:
        """A line that stays (scrolls above the status block)."""
        self._clear_block()
        self.out.write(text + "\n")
        self.out.flush()

    def heading(self, text: str) -> None:
        self.line()
        self.line(self.paint(text, BOLD, CYAN))

    def note(self, text: str) -> None:
        self.line("  " + text)

    def event(self, clock_label: str, text: str, warning: bool = False) -> None:
        marker = self.paint("!", YELLOW, BOLD) if warning else self.paint("*", GREEN)
        self.line(f"  {marker} {self.paint(clock_label, DIM)} {text}")

    def status(self, lines: Sequence[str], key: str) -> None:
        """Show the status; ``key`` summarises it (plain output prints when it changes)."""
        if self.tty:
            self._clear_block()
            width = shutil.get_terminal_size((120, 24)).columns - 1
            for text in lines:
                # A wrapped line would break the redraw (it moves up by screen lines).
                self.out.write(self.paint(text[:width], DIM) + "\n")
            self._block = len(lines)
            self.out.flush()
            return
        now = time.monotonic()
        if key != self._last_key or now - self._last_plain >= self.plain_interval:
            self._last_key = key
            self._last_plain = now
            self.out.write("  | " + " | ".join(s.strip() for s in lines) + "\n")
            self.out.flush()

    def close(self) -> None:
        if self.tty:
            self._block = 0  # leave the last status on screen
        self.out.flush()
