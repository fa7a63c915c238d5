"""Labelled tile sets: layouts, loading, splits and tensor batches."""

from models.data.labelled_set import load_labelled_set
from models.data.mask_set import DEFAULT_MASK_TILE
from models.data.masks import MASK_TILE_RULE
from models.data.merge import load_labelled_sets, merge_sets
from models.data.sets import (
    DEFECT_NAME_RULE,
    LabelledSet,
    Sample,
    is_defect_name,
    stratified_split,
)
from models.data.sources import open_source
from models.data.tensors import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    balanced_sample,
    epoch_batches,
    load_tile,
    load_tiles,
    normalise,
)

__all__ = [
    "DEFAULT_MASK_TILE",
    "DEFECT_NAME_RULE",
    "MASK_TILE_RULE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LabelledSet",
    "Sample",
    "balanced_sample",
    "epoch_batches",
    "is_defect_name",
    "load_labelled_set",
    "load_labelled_sets",
    "merge_sets",
    "load_tile",
    "load_tiles",
    "normalise",
    "open_source",
    "stratified_split",
]
