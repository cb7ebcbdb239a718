"""Untrusted text (file and folder names, labels from a bundle or an index) made safe to print.

A name may hold a newline (which forges a log line), terminal escapes, bidi overrides, bytes
that are not UTF-8 (surrogate escapes, which a strict stdout cannot encode) or rich markup
(``[/b]`` crashes rich, ``[red]`` recolours text). :func:`printable` escapes the first four
the way Python's ``repr`` would; :func:`markup_safe` also escapes rich markup.
"""

from __future__ import annotations

import re

# Controls (C0, DEL, C1), bidi overrides and isolates, line and paragraph separators.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` on one line, with every control or undecodable character escaped."""
    return _UNSAFE.sub(_escape, str(text))


def markup_safe(text: object) -> str:
    """:func:`printable`, and rich markup escaped, for strings that go through rich."""
    from rich.markup import escape

    return escape(printable(text))

