"""The Java regular expressions of botocore's models, compiled with the meaning AWS gives them.

AWS checks request members against the `pattern` of each shape with Java's `Pattern.matches`
(the whole value must match). Python's `re` cannot compile `\\p{L}` and its kind, and reads a
few things differently from Java, so the `regex` package compiles a translation:
- Java's POSIX classes (`\\p{Alnum}`, `\\p{Print}`, `\\p{ASCII}`, ...) are US-ASCII only
  (java.util.regex.Pattern, "POSIX character classes (US-ASCII only)"); they become explicit
  ASCII sets, nested where they stand inside a class (the `regex` package's V1 sets, which
  also read `&&` intersections as Java does);
- `.` matches anything but a line terminator (`\\n`, `\\r`, `\\u0085`, `\\u2028`, `\\u2029`);
- a UTF-16 surrogate pair written as two `\\uXXXX` escapes is one supplementary code point.
A construct this module does not know raises `UnsupportedPattern`: a constraint is never
skipped in silence (tests/unit/local/test_constraint_walk.py compiles every served pattern).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import regex

#: Java's POSIX character classes, US-ASCII only, as set contents.
POSIX_CLASSES = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": "\\x00-\\x7F",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": "!-/:-@\\[-`{-~",
    "Graph": "!-~",
    "Print": " -~",
    "Blank": " \\t",
    "Cntrl": "\\x00-\\x1F\\x7F",
    "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0B\\f\\r",
}
#: Unicode properties both engines read alike (general categories, scripts, blocks).
_UNICODE_PROPERTY = regex.compile(r"(?:Is|In)?[A-Z][a-z]?|L[ultmo]|M[nce]|N[dlo]|Z[slp]|C[cfson]")
_LINE_TERMINATORS = "\\n\\r\\x85\\u2028\\u2029"
_SURROGATE_PAIR = regex.compile(r"\\u(D[89AB][0-9A-Fa-f]{2})\\u(D[C-F][0-9A-Fa-f]{2})")


class UnsupportedPattern(ValueError):
    """A Java construct with no faithful translation here."""


def _join_surrogates(pattern: str) -> str:
    def code_point(match: Any) -> str:
        high, low = int(match[1], 16), int(match[2], 16)
        return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08X}"

    return str(_SURROGATE_PAIR.sub(code_point, pattern))


def _property(pattern: str, start: int) -> tuple[str, int]:
    """`\\p{Name}` / `\\P{Name}` at `start`: its translation and where the pattern goes on."""
    negated = pattern[start + 1] == "P"
    if start + 2 >= len(pattern) or pattern[start + 2] != "{":
        return pattern[start : start + 3], start + 3  # one-letter form, `\pL`: the same in both
    end = pattern.index("}", start)
    name = pattern[start + 3 : end]
    if name in POSIX_CLASSES:
        return f"[{'^' if negated else ''}{POSIX_CLASSES[name]}]", end + 1
    if _UNICODE_PROPERTY.fullmatch(name):
        return pattern[start : end + 1], end + 1
    raise UnsupportedPattern(f"\\p{{{name}}} in {pattern!r}")


def translate(pattern: str) -> str:
    """The pattern, Java's meaning kept, in the `regex` package's V1 syntax."""
    pattern = _join_surrogates(pattern)
    out: list[str] = []
    depth, i = 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            if pattern[i + 1] in "pP":
                text, i = _property(pattern, i)
                out.append(text)
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        elif char == "." and not depth:
            char = f"[^{_LINE_TERMINATORS}]"
        out.append(char)
        i += 1
    return "".join(out)


@lru_cache(maxsize=4096)
def compile_java(pattern: str) -> Any:
    """A compiled pattern to `fullmatch` values with, as Java's `matches()` does."""
    try:
        return regex.compile(translate(pattern), regex.V1)
    except regex.error as err:
        raise UnsupportedPattern(f"{pattern!r}: {err}") from err
