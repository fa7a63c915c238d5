"""Progress for long CLI work: tqdm bars on a terminal, and plain lines when stderr is a
file or a pipe (CI logs, `> log`), where a redrawn bar would write hundreds of lines."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stderr by default) is an interactive terminal."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def terminal_bar(stream: TextIO, **options: Any) -> tqdm | None:
    """A tqdm bar on `stream` when it is a terminal; None (print lines instead) otherwise."""
    return tqdm(file=stream, **options) if on_terminal(stream) else None


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
    postfix); elsewhere one line per epoch and nothing per step."""

    def __init__(self, epochs: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.epochs = epochs
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
            if ended:
                print(epoch_line(epoch + 1, self.epochs, info), file=self.stream, flush=True)
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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class JobFollower:
    """A training job followed over HTTP (the demo): a bar on a terminal; elsewhere one line
    per finished epoch, from the job's stored epochs."""

    def __init__(self, epochs: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.epochs = epochs
        self.shown = 0
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
        self.shown = max(self.shown, len(epochs))

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
