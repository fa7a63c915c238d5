"""The demo's training data: the real sets of ../shared/data when they are there, else
synthetic tiles; each is zipped and uploaded through the API like any user's set."""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL_SETS = ("ccic-dev", "cfd", "crackmix")


def check_reply(reply: httpx.Response, what: str) -> dict[str, Any]:
    """The reply's JSON; a ValueError that names the step when the API refused it."""
    if reply.status_code >= 400:
        raise ValueError(f"{what} failed: HTTP {reply.status_code} {reply.text}")
    return dict(reply.json())


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*.png")):
            zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def upload_synthetic(
    client: httpx.Client, tmp: Path, fast: bool, write_tile_set: Any
) -> tuple[list[str], dict[str, Any]]:
    per_class, epochs = (150, 4) if fast else (400, 10)
    print(
        f"3/6 synthetic data: generating {per_class} synthetic tiles per class "
        "(crack / no_crack, 48 px) and uploading them"
    )
    folder = write_tile_set(tmp / "tiles", per_class, size=48, seed=7)
    dataset = check_reply(
        client.post(
            "/v1/datasets",
            files={"file": ("synthetic.zip", _zip(folder))},
            data={"name": "synthetic demo tiles"},
        ),
        "dataset upload",
    )
    body = {
        "augment": "flip",  # synthetic tiles: survey changes are not what varies
        "epochs": epochs,
        "image_size": 48,
        "batch_size": 32,
        "lr": 0.01,
        "lr_milestones": [max(1, epochs - 2)],
    }
    return [dataset["id"]], body


@dataclass(frozen=True)
class RealPlan:
    """How many real tiles and photos the demo trains on and maps (fast: CI's smoke run)."""

    walls_per_class: int
    photos: dict[str, int]  # photos with masks uploaded, per set
    shown: dict[str, int]  # held-out photos mapped and scored: crack photos per set, and
    crack_free: int  # crack-free wall photos (crackmix's noncrack source)
    epochs: int
    tiles_per_epoch: int


REAL_PLANS = {
    False: RealPlan(400, {"cfd": 80, "crackmix": 320}, {"cfd": 2, "crackmix": 4}, 2, 6, 8000),
    True: RealPlan(120, {"cfd": 8, "crackmix": 12}, {"cfd": 1, "crackmix": 2}, 1, 2, 512),
}
CRACK_FREE_PREFIX = "noncrack"


@dataclass
class HeldOut:
    """A photo never uploaded, mapped at the end and scored against its mask."""

    photo: Path
    mask: Path


def upload_real(
    client: httpx.Client, tmp: Path, fast: bool
) -> tuple[list[str], list[HeldOut], dict[str, Any]]:
    """Upload a seeded sample of the wall tiles and of the photos with masks; keep other
    photos, crack-free ones among them, out of it to map and score afterwards."""
    plan = REAL_PLANS[fast]
    rng = random.Random(7)
    held_out, chosen = _pick_photos(plan, rng)
    print(
        f"3/6 real data from {SHARED_DATA}: {plan.walls_per_class} wall tiles per class "
        f"(ccic-dev) and {len(chosen)} photos with masks (cfd + crackmix), uploaded as two "
        f"sets; {len(held_out)} other photos kept back to map"
    )
    wall_zip = tmp / "walls.zip"
    with zipfile.ZipFile(wall_zip, "w") as zf:
        for label in ("Positive", "Negative"):
            files = sorted((SHARED_DATA / "ccic-dev" / label).glob("*.jpg"))
            for path in rng.sample(files, plan.walls_per_class):
                zf.write(path, f"{label}/{path.name}")
    masks_zip = tmp / "photos.zip"
    with zipfile.ZipFile(masks_zip, "w") as zf:
        for pair in chosen:
            name = pair.photo.parent.parent.name
            zf.write(pair.photo, f"images/{name}_{pair.photo.name}")
            zf.write(pair.mask, f"masks/{name}_{pair.photo.stem}{pair.mask.suffix}")
    ids = []
    for path, label in ((wall_zip, "ccic-dev wall tiles"), (masks_zip, "photos with masks")):
        ids.append(
            check_reply(
                client.post(
                    "/v1/datasets",
                    files={"file": (path.name, path.read_bytes())},
                    data={"name": f"demo: {label}"},
                ),
                "dataset upload",
            )["id"]
        )
    body = {
        "augment": "survey",
        "epochs": plan.epochs,
        "tiles_per_epoch": plan.tiles_per_epoch,
        "image_size": 64,
        "batch_size": 64,
    }
    return ids, held_out, body


def _pick_photos(plan: RealPlan, rng: random.Random) -> tuple[list[HeldOut], list[HeldOut]]:
    """(held out, uploaded): disjoint seeded samples of cfd's and crackmix's photos."""
    held_out: list[HeldOut] = []
    chosen: list[HeldOut] = []
    for name in ("cfd", "crackmix"):
        pairs = [
            HeldOut(p, SHARED_DATA / name / "mask" / f"{p.stem}.png")
            for p in sorted((SHARED_DATA / name / "image").glob("*.jpg"))
        ]
        rng.shuffle(pairs)
        free = [h for h in pairs if h.photo.name.startswith(CRACK_FREE_PREFIX)]
        cracked = [h for h in pairs if not h.photo.name.startswith(CRACK_FREE_PREFIX)]
        shown = cracked[: plan.shown[name]] + (free[: plan.crack_free] if free else [])
        held_out += shown
        rest = [h for h in pairs if h not in shown]
        chosen += rest[: plan.photos[name]]
    return held_out, chosen


class MaskScore:
    """The demo's maps of held-out photos scored against their masks, tile by tile, by the
    rule the masks sets are cut by (models.data.masks.MASK_TILE_RULE)."""

    def __init__(self) -> None:
        self.probs: list[float] = []
        self.truth: list[bool] = []
        self.threshold = 0.5

    def add(self, crackmap: dict[str, Any], mask_path: Path) -> str:
        """Score one map (its tiles listed inline); a line of its counts."""
        import numpy as np
        from PIL import Image

        from models.data.masks import box_labels

        with Image.open(mask_path) as opened:
            mask = np.asarray(opened.convert("L"), dtype=np.uint8) > 127
        tiles = crackmap["tiles"]
        labels = box_labels(mask, [(t["x"], t["y"], t["w"], t["h"]) for t in tiles])
        self.threshold = float(crackmap["summary"]["threshold"])
        crack = [t for t, k in zip(tiles, labels, strict=True) if k == "crack"]
        free = [t for t, k in zip(tiles, labels, strict=True) if k == "no_crack"]
        for group, is_crack in ((crack, True), (free, False)):
            self.probs += [float(t["defect_prob"]) for t in group]
            self.truth += [is_crack] * len(group)
        return (
            f"against its mask: {sum(t['defect'] for t in crack)} of {len(crack)} crack tiles "
            f"found, {sum(t['defect'] for t in free)} of {len(free)} crack-free tiles flagged"
        )

    def summary(self) -> str:
        import torch

        from models.threshold import detection_metrics

        found = detection_metrics(
            torch.tensor(self.probs, dtype=torch.float64),
            torch.tensor(self.truth, dtype=torch.bool),
            self.threshold,
        )
        return (
            f"held-out photos scored against their masks ({found['tiles']} tiles, "
            f"{found['defect_tiles']} crack): tile F1 {found['f1']:.3f} (P {found['precision']:.3f}, "
            f"R {found['recall']:.3f}), {100 * found['false_alarm_rate']:.1f}% of crack-free "
            f"tiles flagged at threshold {self.threshold:.2f}"
        )
