"""A small synthetic dataset in MNRE's original format, for tests, demos and smoke runs.

Posts are built from templates whose trigger words decide the relation, so a tiny model can learn (and
overfit) it from the text alone. Each post gets a real image drawn with PIL: its main shape's colour
and form follow the relation, a few small shapes are distractors. Two caption files describe every
image in two wordings, so the caption visual source can be exercised. Some entity names appear only in
dev/test (MNRE US is non-empty) and some contain words outside the BERT vocabulary (MNRE UT is
non-empty). Output is a pure function of the arguments.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from pgmre.data.mnre import write_samples
from pgmre.data.types import Entity, Sample
from pgmre.labels import NEGATIVE_LABEL

# Entity pools by type. Names with words like "Qorvane" or "Zentrixa" are not BERT vocabulary entries.
TRAIN_ENTITIES: dict[str, list[str]] = {
    "PER": [
        "Jonas Berg",
        "Maria Lopez",
        "Kenji Sato",
        "Liam Walsh",
        "Sofia Rossi",
        "Emma Clarke",
        "Grace Okafor",
        "Nadia Petrova",
        "Qorvane Tillaby",
        "Yusuf Demir",
    ],
    "ORG": [
        "Harbor City FC",
        "Summit Bank",
        "Crescent Media",
        "Lakeside Records",
        "Zentrixa Motors",
        "Northwind Labs",
    ],
    "LOC": ["Lisbon", "Kyoto", "Nairobi", "Toronto", "Glasgow", "Valmora"],
    "EVENT": ["Spring Music Festival", "Grand Prix", "World Cup", "Zumbrava Carnival"],
    "AWARD": ["Golden Lens Award", "Nobel Prize", "Silver Compass Award"],
    "NAT": ["French", "Japanese", "Kenyan", "Brazilian"],
}
#: Names that never occur in train: every third dev/test post uses one (MNRE US).
HELDOUT_ENTITIES: dict[str, list[str]] = {
    "PER": ["Daniel Harper", "Tavrik Olundsen", "Ingrid Solberg"],
    "ORG": ["Blue River United", "Quillstrom Analytics", "Pixelvault Studios"],
    "LOC": ["Ostravel", "Hollowmere"],
    "EVENT": ["Ocean Film Week", "Vexlor Cup"],
}

# relation -> (head type, tail type, templates). "{h}"/"{t}" are replaced by the entity tokens.
TEMPLATES: dict[str, tuple[str, str, list[str]]] = {
    "/per/per/couple": (
        "PER",
        "PER",
        [
            "{h} and her husband {t} at the premiere tonight",
            "{h} married {t} in a small ceremony",
        ],
    ),
    "/per/per/peer": (
        "PER",
        "PER",
        [
            "{h} and teammate {t} celebrate the win",
            "Great training session with {h} and her colleague {t}",
        ],
    ),
    "/per/org/member_of": (
        "PER",
        "ORG",
        [
            "{h} signs a new contract with {t}",
            "{h} scores twice for {t} on Sunday",
        ],
    ),
    "/per/loc/place_of_birth": (
        "PER",
        "LOC",
        [
            "{h} was born in {t} in 1990",
            "{h} returns to hometown {t} where she was born",
        ],
    ),
    "/per/loc/place_of_residence": (
        "PER",
        "LOC",
        [
            "{h} now lives in {t} with her family",
            "{h} moved to {t} last year and loves it",
        ],
    ),
    "/org/loc/locate_at": (
        "ORG",
        "LOC",
        [
            "{h} opens its new headquarters in {t}",
            "The offices of {h} are located in downtown {t}",
        ],
    ),
    "/loc/loc/contain": (
        "LOC",
        "LOC",
        [
            "{t} is a quiet district inside {h}",
            "Exploring {t} , a small town within {h}",
        ],
    ),
    "/org/org/subsidiary": (
        "ORG",
        "ORG",
        [
            "{h} is now a subsidiary of {t}",
            "{t} completes the acquisition of {h}",
        ],
    ),
    "/per/misc/present_in": (
        "PER",
        "EVENT",
        [
            "{h} performs live at the {t}",
            "{h} spotted in the crowd at the {t}",
        ],
    ),
    "/per/misc/awarded": (
        "PER",
        "AWARD",
        [
            "{h} wins the {t} for her work",
            "{h} receives the {t} tonight",
        ],
    ),
    "/per/misc/nationality": (
        "PER",
        "NAT",
        [
            "{h} becomes the first {t} citizen to climb it",
            "{h} is a proud {t} athlete",
        ],
    ),
    "/misc/loc/held_on": (
        "EVENT",
        "LOC",
        [
            "The {h} will be held in {t} next month",
            "Tickets for the {h} hosted by {t} are on sale",
        ],
    ),
    NEGATIVE_LABEL: (
        "PER",
        "LOC",
        [
            "{h} shared a random photo , also trending : {t}",
            "Weather update for {t} and a new song by {h}",
        ],
    ),
}
#: Trailing clause that adds a third entity; pairing it with the head gives a ``None`` sample.
DISTRACTOR_CLAUSES = ["# throwback via {x}", "# tbt photo credit {x}"]
DISTRACTOR_TYPES = ["PER", "ORG", "LOC"]
PREFIXES = ["RT @newsdesk :", "RT @fanpage_hq :", ""]
HASHTAGS = ["# sunday", "# blessed", "# zorbleflux", ""]

# relation -> (colour name, RGB, shape, scene word): what the image and captions show.
VISUALS: dict[str, tuple[str, tuple[int, int, int], str, str]] = {
    "/per/per/couple": ("red", (220, 30, 40), "circle", "wedding"),
    "/per/per/peer": ("blue", (30, 60, 220), "square", "stadium"),
    "/per/org/member_of": ("green", (30, 170, 60), "triangle", "press conference"),
    "/per/loc/place_of_birth": ("yellow", (235, 210, 30), "circle", "old town street"),
    "/per/loc/place_of_residence": ("purple", (130, 40, 170), "square", "living room"),
    "/org/loc/locate_at": ("orange", (240, 130, 20), "triangle", "office tower"),
    "/loc/loc/contain": ("cyan", (30, 200, 210), "circle", "city map"),
    "/org/org/subsidiary": ("black", (20, 20, 20), "square", "boardroom"),
    "/per/misc/present_in": ("pink", (240, 120, 180), "triangle", "concert stage"),
    "/per/misc/awarded": ("gold", (200, 160, 40), "star", "award ceremony"),
    "/per/misc/nationality": ("white", (250, 250, 250), "triangle", "flag parade"),
    "/misc/loc/held_on": ("brown", (120, 70, 30), "circle", "festival ground"),
}
DISTRACTOR_COLOURS = [("grey", (128, 128, 128)), ("teal", (0, 128, 128)), ("olive", (128, 128, 0))]
SHAPES = ["circle", "square", "triangle", "star"]


@dataclass(frozen=True)
class SyntheticDataset:
    """Paths of a generated dataset."""

    root: Path
    train: Path
    dev: Path
    test: Path
    image_dir: Path
    captions_a: Path
    captions_b: Path

    @property
    def splits(self) -> dict[str, Path]:
        return {"train": self.train, "dev": self.dev, "test": self.test}


def _tokens(template: str, slots: dict[str, str]) -> tuple[list[str], dict[str, Entity]]:
    tokens: list[str] = []
    entities: dict[str, Entity] = {}
    for word in template.split():
        if word in ("{h}", "{t}", "{x}"):
            key = word[1]
            name_tokens = slots[key].split()
            entities[key] = Entity(" ".join(name_tokens), len(tokens), len(tokens) + len(name_tokens))
            tokens.extend(name_tokens)
        else:
            tokens.append(word)
    return tokens, entities


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], rgb: tuple[int, int, int]
) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "square":
        draw.rectangle(box, fill=rgb)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=rgb)
    else:
        draw.regular_polygon(((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2), 5, fill=rgb)


class _Generator:
    def __init__(self, seed: int, image_size: int, image_dir: Path) -> None:
        self.seed = seed
        self.size = image_size
        self.image_dir = image_dir
        self.captions_a: dict[str, str] = {}
        self.captions_b: dict[str, str] = {}

    def _image(self, rng: random.Random, img_id: str, relation: str) -> None:
        if relation in VISUALS:
            colour, rgb, shape, scene = VISUALS[relation]
        else:  # no relation: an unrelated shape in a neutral colour
            colour, rgb = rng.choice(DISTRACTOR_COLOURS)
            shape, scene = rng.choice(SHAPES), "street scene"
        s = self.size
        background = tuple(rng.randint(200, 240) for _ in range(3))
        image = Image.new("RGB", (s, s), background)  # type: ignore[arg-type]
        draw = ImageDraw.Draw(image)
        n_small = rng.randint(1, 3)
        for _ in range(n_small):
            d = rng.randint(s // 10, s // 6)
            x, y = rng.randint(0, s - d), rng.randint(0, s - d)
            _draw_shape(draw, rng.choice(SHAPES), (x, y, x + d, y + d), rng.choice(DISTRACTOR_COLOURS)[1])
        d = rng.randint(s // 3, s // 2)
        x, y = rng.randint(0, s - d), rng.randint(0, s - d)
        _draw_shape(draw, shape, (x, y, x + d, y + d), rgb)
        image.save(self.image_dir / img_id, format="JPEG", quality=90)
        self.captions_a[img_id] = (
            f"a large {colour} {shape} like a {scene}, with {n_small} small shapes around it"
        )
        self.captions_b[img_id] = (
            f"A picture of a {scene}: one big {shape} coloured {colour} among small objects."
        )

    def _name(self, rng: random.Random, kind: str, heldout: int | None, avoid: str | None) -> str:
        if heldout is not None and kind in HELDOUT_ENTITIES:
            pool = HELDOUT_ENTITIES[kind]
            return pool[heldout % len(pool)]
        return rng.choice([n for n in TRAIN_ENTITIES[kind] if n != avoid])

    def post(self, rng: random.Random, split: str, index: int) -> list[Sample]:
        relation = rng.choice(list(TEMPLATES))
        head_type, tail_type, templates = TEMPLATES[relation]
        # Dev/test: every third post puts a held-out name in the head (or tail) slot.
        heldout = index // 3 if split != "train" and index % 3 == 0 else None
        head_heldout = heldout if head_type in HELDOUT_ENTITIES else None
        tail_heldout = heldout if head_heldout is None else None
        head = self._name(rng, head_type, head_heldout, None)
        tail = self._name(rng, tail_type, tail_heldout, head)
        text = " ".join(w for w in (rng.choice(PREFIXES), rng.choice(templates)) if w)
        slots = {"h": head, "t": tail}
        with_distractor = rng.random() < 0.4
        if with_distractor:
            slots["x"] = self._name(rng, rng.choice(DISTRACTOR_TYPES), None, None)
            if slots["x"] in (head, tail):
                with_distractor = False
            else:
                text += " " + rng.choice(DISTRACTOR_CLAUSES)
        text = " ".join(w for w in (text, rng.choice(HASHTAGS)) if w)
        tokens, ents = _tokens(text, slots)
        img_id = f"synth_{split}_{index:05d}.jpg"
        self._image(rng, img_id, relation)
        samples = [Sample(tuple(tokens), ents["h"], ents["t"], img_id, relation)]
        if with_distractor:
            samples.append(Sample(tuple(tokens), ents["h"], ents["x"], img_id, NEGATIVE_LABEL))
        return samples

    def split(self, split: str, n: int) -> list[Sample]:
        rng = random.Random(f"pgmre-synthetic-{self.seed}-{split}")
        samples: list[Sample] = []
        index = 0
        while len(samples) < n:
            samples.extend(self.post(rng, split, index))
            index += 1
        return samples[:n]


def make_synthetic_dataset(
    out_dir: str | Path,
    n_train: int = 64,
    n_dev: int = 16,
    n_test: int = 16,
    seed: int = 0,
    image_size: int = 64,
) -> SyntheticDataset:
    """Write ``train.txt``, ``dev.txt``, ``test.txt`` (MNRE format), ``images/`` and two caption files."""
    if min(n_train, n_dev, n_test) < 0:
        raise ValueError("sample counts must be >= 0")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    root = Path(out_dir)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    gen = _Generator(seed, image_size, image_dir)
    paths = {}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        paths[split] = write_samples(gen.split(split, n), root / f"{split}.txt", fmt="mnre")
    captions_a, captions_b = root / "captions_a.json", root / "captions_b.json"
    captions_a.write_text(json.dumps(gen.captions_a, indent=1, sort_keys=True))
    captions_b.write_text(json.dumps(gen.captions_b, indent=1, sort_keys=True))
    return SyntheticDataset(
        root, paths["train"], paths["dev"], paths["test"], image_dir, captions_a, captions_b
    )
