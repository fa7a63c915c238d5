"""Progress for long CLI work: tqdm bars on a terminal, and plain lines when stderr is a
file or a pipe (CI logs, `> log`), where a redrawn bar would write hundreds of lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stderr by default) is an interactive terminal."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def terminal_bar(stream: TextIO, **options: Any) -> tqdm | None:
    """A tqdm bar on `stream` when it is a terminal; None (print lines instead) otherwise."""
    return tqdm(file=stream, **options) if on_terminal(stream) else None


# With no terminal, a line at least this often while work runs (the brief asks for one at
# least every 30 s; a step or a poll can be late by a few seconds).
LINE_INTERVAL_S = 20.0


def duration(seconds: float) -> str:
    """A short human duration: '45 s', '12 min 5 s', '2 h 3 min'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class Throttle:
    """True at most once per interval (and on the first call)."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s, self.clock = interval_s, clock
        self.last: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self.last is not None and now - self.last < self.interval_s:
            return False
        self.last = now
        return True

    def reset(self) -> None:
        self.last = self.clock()


def epoch_line(epoch: int, epochs: int, info: dict[str, Any]) -> str:
    """One epoch's figures as one line."""
    line = f"epoch {epoch}/{epochs}: loss {info['train_loss']:.4f}, val macro F {info['val_macro_f1']:.4f}"
    if "val_ece" in info:
        line += f", val ECE {info['val_ece']:.4f}"
    if "train_images_per_s" in info:
        line += f", {info['train_images_per_s']:.0f} img/s"
    return line


class TrainingBar:
    """Local training: a bar over all steps on a terminal (the last epoch's figures in its
    postfix); elsewhere one line per epoch, and between them a line at least every
    LINE_INTERVAL_S with the tiles done, tiles/s and the ETA of the epoch and of the run."""

    def __init__(
        self,
        epochs: int,
        stream: TextIO | None = None,
        interval_s: float = LINE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.epochs = epochs
        self.clock = clock
        self.throttle = Throttle(interval_s, clock)
        self.epoch_started: tuple[int, float, int] | None = None  # (epoch, clock, tiles done)
        self.run_started: tuple[float, float] | None = None  # (percent, clock) at the first step
        self.bar = terminal_bar(
            self.stream,
            total=100.0,
            unit="%",
            desc="training",
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}% [{elapsed}<{remaining}{postfix}]",
        )

    def __call__(self, epoch: int, step: int, info: dict[str, Any]) -> None:
        ended = info.get("phase") == "epoch_end"
        if self.bar is None:
            line = self._log_line(epoch, step, info)
            if line is not None:
                print(line, file=self.stream, flush=True)
            return
        self.bar.n = min(100.0, float(info.get("percent", 0.0)))
        if ended:
            self.bar.set_postfix_str(
                f"epoch {epoch + 1}/{self.epochs} loss {info['train_loss']:.3f} "
                f"val F {info['val_macro_f1']:.3f}"
            )
            self.bar.write(epoch_line(epoch + 1, self.epochs, info), file=self.stream)
        else:
            self.bar.set_postfix_str(
                f"epoch {epoch + 1}/{self.epochs} loss {info['loss']:.3f}", refresh=False
            )
        self.bar.refresh()

    def _log_line(self, epoch: int, step: int, info: dict[str, Any]) -> str | None:
        """The line to write to a log for this report, if one is due."""
        phase = info.get("phase")
        if phase == "epoch_end":
            self.throttle.reset()
            return epoch_line(epoch + 1, self.epochs, info)
        if phase == "decode":
            if not self.throttle.due() and info["done"] < info["total"]:
                return None
            return f"decoding tiles: {info['done']:,}/{info['total']:,}"
        if "tiles_done" not in info:
            return None
        now, done, percent = self.clock(), int(info["tiles_done"]), float(info["percent"])
        # Rates count from the first step seen: of this epoch, and of the run (which may
        # have resumed half-way).
        if self.epoch_started is None or self.epoch_started[0] != epoch:
            self.epoch_started = (epoch, now, done)
        if self.run_started is None:
            self.run_started = (percent, now)
        if not self.throttle.due():
            return None
        total = int(info["epoch_tiles"])
        _, t0, d0 = self.epoch_started
        rate = (done - d0) / (now - t0) if now > t0 else 0.0
        p0, r0 = self.run_started
        run_eta = (now - r0) / (percent - p0) * (100.0 - percent) if percent > p0 else None
        return (
            f"epoch {epoch + 1}/{self.epochs}: {done:,}/{total:,} tiles, {rate:.0f} tiles/s, "
            f"epoch ETA {duration((total - done) / rate) if rate > 0 else '?'}, "
            f"run ETA {duration(run_eta) if run_eta is not None else '?'}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class JobFollower:
    """A training job followed over HTTP (the demo): a bar on a terminal; elsewhere one line
    per finished epoch, from the job's stored epochs, and between them the job's percentage
    at least every LINE_INTERVAL_S."""

    def __init__(
        self,
        epochs: int,
        stream: TextIO | None = None,
        interval_s: float = LINE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.epochs = epochs
        self.shown = 0
        self.throttle = Throttle(interval_s, clock)
        self.throttle.reset()
        self.bar = terminal_bar(
            self.stream,
            total=100.0,
            desc="training",
            unit="%",
            bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}{postfix}]",
        )

    def update(self, job: dict[str, Any]) -> None:
        """Show a job as GET /v1/jobs/{id} returns it."""
        epochs = job["epochs"]
        if self.bar is not None:
            self.bar.n = float(job["progress"])
            if epochs:
                last = epochs[-1]
                self.bar.set_postfix_str(f"epoch {last['epoch']}, val F {last['val_macro_f1']:.3f}")
            self.bar.refresh()
            return
        for record in epochs[self.shown :]:
            info = {**record.get("metrics", {}), **record}
            print(epoch_line(record["epoch"], self.epochs, info), file=self.stream, flush=True)
            self.throttle.reset()
        self.shown = max(self.shown, len(epochs))
        if self.throttle.due():
            print(
                f"training: {float(job['progress']):.1f}% ({job.get('status', 'running')}, "
                f"{self.shown}/{self.epochs} epochs done)",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TileBar:
    """One photo's tiles (`crackscan inspect`): a bar on a terminal, silent elsewhere (the
    command prints one line per photo when it is done)."""

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.bar = terminal_bar(
            stream or sys.stderr, total=1, desc=name, unit="tile", dynamic_ncols=True
        )

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

    def __enter__(self) -> TileBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
