"""Per-sample tables keyed as TMR and HVPNeT key theirs: by 0-based line in the split file, or by image.

Grounding phrases, crop dicts and any other per-sample JSON share this keying: a key that is a number is
the 0-based line of the sample in its split's text file (``Sample.source`` line - 1); any other key is an
image name, matched by file stem so ``post.jpg`` and ``post`` agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pgmre.data.types import Sample

V = TypeVar("V")


def file_stem(name: str) -> str:
    """An image or file name without its last extension (``"a.b.jpg"`` -> ``"a.b"``)."""
    return name.rsplit(".", 1)[0] if "." in name else name


@dataclass
class SampleKeyedTable(Generic[V]):
    """Values by sample line (``by_line``, 0-based) and by image (``by_image``, by file stem)."""

    path: str
    by_line: dict[int, V] = field(default_factory=dict)
    by_image: dict[str, V] = field(default_factory=dict)

    def add(self, key: object, value: V) -> bool:
        """File ``value`` under a line number (int or digit string) or an image name; False for other keys."""
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            self.by_line[int(key)] = value
        elif isinstance(key, str):
            self.by_image[file_stem(key)] = value
        else:
            return False
        return True

    def lookup(self, sample: Sample) -> V | None:
        """The value of a sample (by image first, then by line); None when the table does not mention it."""
        if self.by_image and sample.img_id is not None:
            found = self.by_image.get(file_stem(sample.img_id))
            if found is not None:
                return found
        if self.by_line and sample.source is not None:
            return self.by_line.get(sample.source[1] - 1)
        return None

    @property
    def keyed_by_line(self) -> bool:
        """Line numbers repeat across splits: such a table serves one split only."""
        return bool(self.by_line)


def read_json_object(path: str | Path, error: type[Exception], what: str) -> dict[str, Any]:
    """A JSON object from ``path``; anything else raises ``error`` naming the file (``what``: for messages)."""
    from pgmre.data.parsing import ParseError, parse_json

    path = Path(path)
    try:
        raw = parse_json(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    except (ParseError, UnicodeDecodeError) as err:
        raise error(f"{path}: not a JSON {what} ({err})") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected an object {{line number or img_id: value}} in a {what}")
    return raw
