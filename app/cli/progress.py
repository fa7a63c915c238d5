"""Progress bars for long CLI work (tqdm on a terminal, plain lines otherwise)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class TrainingBar:
    """A bar over all training steps, with the last epoch's validation F in its postfix."""

    def __init__(self, epochs: int) -> None:
        self.bar = tqdm(
            total=100.0,
            unit="%",
            desc="training",
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}% [{elapsed}<{remaining}{postfix}]",
        )
        self.epochs = epochs

    def __call__(self, epoch: int, step: int, info: dict[str, Any]) -> None:
        self.bar.n = min(100.0, float(info.get("percent", 0.0)))
        if info.get("phase") == "epoch_end":
            self.bar.set_postfix_str(
                f"epoch {epoch + 1}/{self.epochs} loss {info['train_loss']:.3f} "
                f"val F {info['val_macro_f1']:.3f}"
            )
            self.bar.write(
                f"epoch {epoch + 1}/{self.epochs}: loss {info['train_loss']:.4f}, "
                f"val macro F {info['val_macro_f1']:.4f}, {info['train_images_per_s']:.0f} img/s"
            )
        else:
            self.bar.set_postfix_str(
                f"epoch {epoch + 1}/{self.epochs} loss {info['loss']:.3f}", refresh=False
            )
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
