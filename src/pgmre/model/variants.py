"""Named model variants: the paper's ablations (Table 2) plus a text-only baseline.

See ``docs/method.md`` ("Variants") for what each one computes.
"""

from __future__ import annotations

from typing import Any

# use_visual, use_explanations, use_apm, use_rpm
_VARIANTS: dict[str, tuple[bool, bool, bool, bool]] = {
    "text-only": (False, False, False, False),
    "base": (True, False, False, False),
    "ent": (True, True, False, False),
    "ent-apm": (True, True, True, False),
    "ent-rpm": (True, True, False, True),
    "full": (True, True, True, True),
}
VARIANTS: tuple[str, ...] = tuple(_VARIANTS)


def variant_overrides(name: str) -> dict[str, Any]:
    """``ModelConfig`` field values of a named variant (``text-only|base|ent|ent-apm|ent-rpm|full``)."""
    try:
        visual, explanations, apm, rpm = _VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown model variant {name!r}; choose from {', '.join(VARIANTS)}") from None
    fields: dict[str, Any] = {
        "use_visual": visual,
        "use_explanations": explanations,
        "use_apm": apm,
        "use_rpm": rpm,
    }
    if not explanations:
        # a variant without explanations has none to drop, so a config that trains with explanation
        # dropout still yields its text-only and Base ablations
        fields["explanation_dropout"] = 0.0
    return fields
