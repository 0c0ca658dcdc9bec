"""Pre-tokenization patterns: the names `"gpt2"` (the default), `"cl100k"` (GPT-3.5/GPT-4) and
`"o200k"` (GPT-4o), or any regex. The core resolves them (`rust/pretokenize/pattern.rs`): a
name, or a regex exactly equal to a named one's, runs a hand-written matcher; any other regex
runs through fancy-regex with tiktoken's semantics (text no match covers is dropped, so a
pattern should match every character; and a stream is then cut only where special tokens
start, so the longest stretch between two of them is held in memory). A tokenizer saves its
pattern as the regex string, so other tools read it.

    regex = resolve_pattern("cl100k")   # == CL100K_PATTERN; ValueError for a bad regex
"""

from __future__ import annotations

from . import _core

GPT2_PATTERN: str = _core.GPT2_PATTERN
CL100K_PATTERN: str = _core.CL100K_PATTERN
O200K_PATTERN: str = _core.O200K_PATTERN
PATTERNS: dict[str, str] = {"gpt2": GPT2_PATTERN, "cl100k": CL100K_PATTERN, "o200k": O200K_PATTERN}
"""The named patterns and their regexes (tiktoken's strings for `cl100k_base` and `o200k_base`)."""

__all__ = ["CL100K_PATTERN", "GPT2_PATTERN", "O200K_PATTERN", "PATTERNS", "pattern_name", "resolve_pattern", "same_pattern"]


def _check(pattern: object, what: str) -> str:
    if not isinstance(pattern, str):
        raise TypeError(f"{what} must be a str (a name: {', '.join(map(repr, PATTERNS))}, or a regex), not {type(pattern).__name__}")
    return pattern


def resolve_pattern(pattern: object, what: str = "pattern") -> str:
    """The regex a pattern argument stands for: a name's regex, else the regex itself.
    Raises TypeError for a non-str and ValueError for an unknown name, an invalid regex, or one
    whose matches can be empty. resolve_pattern("gpt2") -> GPT2_PATTERN."""
    return _core.resolve_pattern(_check(pattern, what))[1]


def pattern_name(pattern: object) -> str:
    """ "gpt2", "cl100k", "o200k" (a hand-written matcher runs it) or "custom"."""
    return _core.resolve_pattern(_check(pattern, "pattern"))[0]


def same_pattern(a: str, b: str) -> bool:
    """Whether two pattern arguments split every text alike as far as spelling shows: the same
    named matcher (whatever name or regex spelling), or the same custom regex string."""
    (name_a, regex_a), (name_b, regex_b) = _core.resolve_pattern(a), _core.resolve_pattern(b)
    return name_a == name_b and (name_a != "custom" or regex_a == regex_b)
