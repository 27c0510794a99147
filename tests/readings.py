"""Shared checks on reading sentences (imported by the tests that build them)."""

from __future__ import annotations


def nested(text: str) -> bool:
    """True when a parenthesis opens inside another: "(158 features (1,580 parameters))"."""
    depth = 0
    for c in text:
        depth += c == "("
        if depth > 1:
            return True
        depth -= c == ")"
    return False
