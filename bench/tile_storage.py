"""What a big crack map costs to store and read back: the .npz tile table against inline JSON.

A map at the tile cap (a 4000 x 4000 photo, tile 16 at stride 8: 249,001 tiles) with
random probabilities (they compress worst), stored as the service stores it (the tile
table's .npz) and as version 1 stored it (every tile as JSON in the row). Times are
medians of --repeats runs.

    python -m bench.tile_storage
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from app.schemas.crackmap import tiles_read
from bench.common import median, print_table, write_results
from models.inference import TileTable, make_grid


def cap_sized_table(side: int, tile: int, stride: int, seed: int) -> TileTable:
    grid = make_grid(side, side, tile, stride)
    crack = np.random.default_rng(seed).random(len(grid), dtype=np.float32)
    probs = np.stack([crack, 1 - crack], axis=1)
    return TileTable(grid, ["crack", "no_crack"], ["crack"], 0.5, probs, crack.copy())


def seconds(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4000, help="photo side in pixels")
    parser.add_argument("--tile", type=int, default=16)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    table = cap_sized_table(args.side, args.tile, args.stride, seed=0)
    npz = table.to_npz()
    inline = json.dumps(tiles_read(table)).encode()
    rows = {
        "npz tile table": {
            "bytes": len(npz),
            "write_s": seconds(table.to_npz, args.repeats),
            "read_s": seconds(lambda: TileTable.from_npz(npz), args.repeats),
        },
        "inline JSON (crackmap/1)": {
            "bytes": len(inline),
            "write_s": seconds(lambda: json.dumps(tiles_read(table)), args.repeats),
            "read_s": seconds(lambda: json.loads(inline), args.repeats),
        },
    }
    baseline = rows["inline JSON (crackmap/1)"]["bytes"]
    print(
        f"{len(table):,} tiles ({args.side} x {args.side} px, tile {args.tile}, stride {args.stride})"
    )
    print_table(
        ["storage", "MiB", "x inline size", "write s", "read s"],
        [
            [name, r["bytes"] / 2**20, r["bytes"] / baseline, r["write_s"], r["read_s"]]
            for name, r in rows.items()
        ],
    )
    path = write_results(
        "tile_storage", {"tiles": len(table), "settings": vars(args), "rows": rows}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
