"""The demo's training data: the real sets of ../shared/data when they are there, else
synthetic tiles; each is zipped and uploaded through the API like any user's set."""

from __future__ import annotations

import io
import random
import zipfile
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


def upload_real(
    client: httpx.Client, tmp: Path, fast: bool
) -> tuple[list[str], list[Path], dict[str, Any]]:
    """Upload a seeded sample of the wall tiles and of the photos with masks; keep some
    photos out of it to map afterwards."""
    walls, photos, epochs = (120, 10, 2) if fast else (400, 28, 6)
    rng = random.Random(7)
    print(
        f"3/6 real data from {SHARED_DATA}: {walls} wall tiles per class (ccic-dev) and "
        f"{photos} photos with masks (cfd + crackmix), uploaded as two sets"
    )
    wall_zip = tmp / "walls.zip"
    with zipfile.ZipFile(wall_zip, "w") as zf:
        for label in ("Positive", "Negative"):
            files = sorted((SHARED_DATA / "ccic-dev" / label).glob("*.jpg"))
            for path in rng.sample(files, walls):
                zf.write(path, f"{label}/{path.name}")
    chosen: list[tuple[Path, Path]] = []
    held_out: list[Path] = []
    for name, mask_ext in (("cfd", ".png"), ("crackmix", ".png")):
        images = sorted((SHARED_DATA / name / "image").glob("*.jpg"))
        picked = rng.sample(images, photos // 2 + 2)
        held_out += picked[:2]  # never uploaded: mapped at the end
        chosen += [(p, SHARED_DATA / name / "mask" / (p.stem + mask_ext)) for p in picked[2:]]
    masks_zip = tmp / "photos.zip"
    with zipfile.ZipFile(masks_zip, "w") as zf:
        for image, mask in chosen:
            zf.write(image, f"images/{image.parent.parent.name}_{image.name}")
            zf.write(mask, f"masks/{image.parent.parent.name}_{image.stem}{mask.suffix}")
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
        "epochs": epochs,
        "image_size": 64,
        "batch_size": 64,
        "lr": 0.01,
        "lr_milestones": [max(1, epochs - 2)],
    }
    return ids, held_out, body
