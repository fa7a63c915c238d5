"""What a class name may be: it becomes a folder name when labels are exported and a label
in every answer, so no path separators, no `.` or `..`, no control characters, and short."""

from __future__ import annotations

import unicodedata

MAX_CLASS_NAME = 100  # characters; the review API takes labels up to this long
CLASS_NAME_RULE = (
    f"1 to {MAX_CLASS_NAME} characters, not '.' or '..', without '/', '\\\\' or control "
    "characters, and no spaces at either end"
)


def class_name_problem(name: object) -> str | None:
    """Why `name` is not a usable class name, or None when it is."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name or len(name) > MAX_CLASS_NAME:
        return f"is {len(name)} characters long"
    if name != name.strip():
        return "starts or ends with a space"
    if name in (".", ".."):
        return "is a path step"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        return "holds a control character"
    return None


def check_class_names(names: list[str], where: str) -> None:
    """ValueError naming the first unusable class name (see CLASS_NAME_RULE)."""
    for name in names:
        problem = class_name_problem(name)
        if problem is not None:
            shown = repr(name)[:60] if isinstance(name, str) else repr(name)[:60]
            raise ValueError(
                f"{where}: the class name {shown} {problem}; a class name has {CLASS_NAME_RULE}"
            )
