"""``{split}`` placeholders in configured input paths (captions, image dirs, crop dicts).

MNRE and HVPNeT name the development split ``val`` (``cogvlm_val.json``, ``img_vg/val``) but HVPNeT's
crop dict ``mre_dev_dict.pth``; the data config calls it ``dev``. A template is therefore tried with
each alias of the split and the first existing path wins. Without a split, a template stands for all
existing splits (their captions are merged; img_ids are unique across MNRE's splits).
"""

from __future__ import annotations

from pathlib import Path

from pgmre.data.keyed import file_stem

PLACEHOLDER = "{split}"
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "dev": ("dev", "val", "valid"),
    "val": ("val", "dev", "valid"),
    "valid": ("valid", "val", "dev"),
    "test": ("test",),
}
ALL_SPLITS = ("train", "dev", "test")

__all__ = [
    "ALL_SPLITS",
    "PLACEHOLDER",
    "SPLIT_ALIASES",
    "InputPathError",
    "expand",
    "file_stem",
    "split_named_by",
    "split_of_file",
]


class InputPathError(FileNotFoundError):
    """A configured input path (or every expansion of a ``{split}`` template) that does not exist."""


def split_of_file(path: str | Path) -> str:
    """The split a data file holds, by its name: ``test``, ``train``, else ``dev`` (which finds ``val`` too)."""
    return split_named_by(path) or "dev"


def split_named_by(path: str | Path) -> str | None:
    """The split a file's name names (``test``, ``train``, ``dev`` for dev or val), None for another name."""
    name = Path(path).name.lower()
    for split, words in (("test", ("test",)), ("train", ("train",)), ("dev", ("dev", "val"))):
        if any(word in name for word in words):
            return split
    return None


def expand(template: str, split: str | None) -> list[Path]:
    """The existing paths a template stands for: one for a given split, every split's for None."""
    if PLACEHOLDER not in template:
        path = Path(template)
        if not path.exists():
            raise InputPathError(f"{template}: no such file or directory")
        return [path]
    splits = (split,) if split is not None else ALL_SPLITS
    found: list[Path] = []
    tried: list[str] = []
    for name in splits:
        for alias in SPLIT_ALIASES.get(name, (name,)):
            candidate = Path(template.replace(PLACEHOLDER, alias))
            tried.append(str(candidate))
            if candidate.exists():
                found.append(candidate)
                break
    if not found:
        raise InputPathError(f"{template}: none of {', '.join(tried)} exists")
    return found
