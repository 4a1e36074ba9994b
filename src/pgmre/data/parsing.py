"""Untrusted values in, plain errors out: line parsing, bounded reprs and the Unicode rule for text.

Every reader of user lines (MNRE and JSONL records, ``pgmre predict`` posts, cache exports) parses
through :func:`parse_json` / :func:`parse_literal`, so a hostile line (100,000 ``[``, an integer of
5,000 digits) becomes one :class:`ParseError` naming what is wrong instead of a ``RecursionError`` or
a ``ValueError`` from deep inside the parser. :func:`shown` quotes a value in a message without
failing on it, and :func:`text_problem` is the one rule for text every validator applies.
"""

from __future__ import annotations

import ast
import json
import sys
from typing import Any

#: Longest quoted value in a message; longer ones are cut with "...".
MAX_SHOWN = 80


class ParseError(ValueError):
    """A line that is not a JSON value / Python literal; the message is the reason alone (callers add
    where and what was expected, e.g. ``file:3: not a JSON object: nested too deeply``)."""


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, never raising.

    ``repr`` fails on integers over ``sys.get_int_max_str_digits()`` digits and on very deep nesting;
    such values are described instead, so an error message about a bad value cannot itself fail.
    """
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print in decimal
        text = f"<integer of {value.bit_length()} bits>" if isinstance(value, int) else "<unprintable>"
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def text_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode text, or None.

    A lone surrogate (``"\\ud800"``, which JSON and Python literals can spell) cannot be encoded as
    UTF-8, so the tokenizer, the explanation cache and every output file would fail on it later.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return (
            f"holds an unpaired surrogate U+{ord(text[err.start]):04X} at character {err.start} "
            "(not valid Unicode text)"
        )
    return None


def _limit_reason(err: BaseException) -> str | None:
    if "integer string conversion" in str(err):
        return f"holds an integer of more than {sys.get_int_max_str_digits()} digits"
    return None


def parse_json(text: str) -> Any:
    """``json.loads`` with every failure as :class:`ParseError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ParseError(str(err)) from None
    except RecursionError:
        raise ParseError("nested too deeply") from None
    except ValueError as err:  # the integer-length limit
        raise ParseError(_limit_reason(err) or str(err)) from None


def parse_literal(text: str) -> Any:
    """``ast.literal_eval`` (never ``eval``: no code runs) with every failure as :class:`ParseError`."""
    try:
        return ast.literal_eval(text)
    except SyntaxError as err:
        reason = _limit_reason(err) or err.msg
        raise ParseError(reason) from None
    except (RecursionError, MemoryError):  # the parser's and literal_eval's own depth limits
        raise ParseError("nested too deeply") from None
    except (ValueError, TypeError) as err:  # a non-literal (a name, a call) or an unhashable dict key
        raise ParseError(_limit_reason(err) or str(err) or type(err).__name__) from None
