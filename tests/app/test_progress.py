"""CLI progress: redrawn bars on a terminal, one plain line per epoch in a log."""

from __future__ import annotations

import io

from app.cli.progress import JobFollower, TileBar, TrainingBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def steps_and_epochs(bar: TrainingBar, epochs: int, steps: int) -> None:
    for epoch in range(epochs):
        for step in range(steps):
            bar(epoch, step, {"percent": 100 * (epoch + step / steps) / epochs, "loss": 0.5})
        info = {"train_loss": 0.4, "val_macro_f1": 0.8, "val_ece": 0.05, "train_images_per_s": 90}
        bar(epoch, steps, {"phase": "epoch_end", "percent": 100 * (epoch + 1) / epochs} | info)
    bar.close()


def test_training_in_a_log_is_one_line_per_epoch():
    log = io.StringIO()
    steps_and_epochs(TrainingBar(3, log), epochs=3, steps=50)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 3
    assert lines[0] == "epoch 1/3: loss 0.4000, val macro F 0.8000, val ECE 0.0500, 90 img/s"


def test_training_on_a_terminal_redraws_a_bar():
    screen = Terminal()
    steps_and_epochs(TrainingBar(2, screen), epochs=2, steps=5)
    assert "\r" in screen.getvalue() and "epoch 2/2: loss 0.4000" in screen.getvalue()


def test_a_followed_job_prints_each_epoch_once_in_a_log():
    log = io.StringIO()
    follower = JobFollower(2, log)
    epoch = {"epoch": 1, "train_loss": 0.7, "val_macro_f1": 0.6, "metrics": {"val_ece": 0.1}}
    for job in (
        {"progress": 10.0, "epochs": []},
        {"progress": 50.0, "epochs": [epoch]},
        {"progress": 60.0, "epochs": [epoch]},
        {"progress": 100.0, "epochs": [epoch, epoch | {"epoch": 2, "val_macro_f1": 0.9}]},
    ):
        follower.update(job)
    follower.close()
    assert log.getvalue().splitlines() == [
        "epoch 1/2: loss 0.7000, val macro F 0.6000, val ECE 0.1000",
        "epoch 2/2: loss 0.7000, val macro F 0.9000, val ECE 0.1000",
    ]


def test_tile_progress_is_silent_in_a_log_and_a_bar_on_a_terminal():
    log, screen = io.StringIO(), Terminal()
    for stream in (log, screen):
        with TileBar("wall.jpg", stream) as show:
            for done in range(0, 101, 10):
                show(done, 100)
    assert log.getvalue() == "" and "wall.jpg" in screen.getvalue()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_training_in_a_log_prints_a_line_at_least_every_interval_within_an_epoch():
    log, clock = io.StringIO(), Clock()
    bar = TrainingBar(2, log, interval_s=30.0, clock=clock)
    bar(0, 0, {"phase": "decode", "done": 500, "total": 1000})  # the first report: a line
    bar(0, 0, {"phase": "decode", "done": 900, "total": 1000})  # too soon: none
    bar(0, 0, {"phase": "decode", "done": 1000, "total": 1000})  # done: always a line
    for step in range(1, 101):  # 100 steps of 64 tiles, 1 s each: 1 epoch = 50% of the run
        clock.now += 1.0
        info = {"phase": "train", "loss": 0.5, "percent": step / 2.0}
        bar(0, step, info | {"tiles_done": 64 * step, "epoch_tiles": 6400})
    lines = log.getvalue().splitlines()
    assert lines[:2] == ["decoding tiles: 500/1,000", "decoding tiles: 1,000/1,000"]
    progress = lines[2:]
    # One line per 30 s after the last one (the decoding's): steps 30, 60 and 90.
    assert len(progress) == 3 and "\r" not in log.getvalue()
    assert progress[0].startswith("epoch 1/2: 1,920/6,400 tiles, 64 tiles/s, ")
    assert progress[1] == (
        "epoch 1/2: 3,840/6,400 tiles, 64 tiles/s, epoch ETA 40 s, run ETA 2 min 20 s"
    )


def test_a_followed_job_in_a_log_shows_its_percentage_between_epochs():
    log, clock = io.StringIO(), Clock()
    follower = JobFollower(3, log, interval_s=30.0, clock=clock)
    for percent in (5.0, 10.0, 20.0):
        clock.now += 20.0
        follower.update({"progress": percent, "status": "running", "epochs": []})
    assert log.getvalue().splitlines() == [
        "training: 10.0% (running, 0/3 epochs done)",  # 40 s after the start
    ]
