"""A JSON request body parsed with bounds: nesting depth and number length are checked
before (and while) ``json.loads`` runs, so a hostile body is a 400 and never a
``RecursionError`` (10,000 brackets) or a ``ValueError`` from Python's int-string limit.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from artylyze.serve.errors import BadRequest

MAX_DEPTH = 32  # our bodies are {"id": N}: depth 1
MAX_NUMBER_CHARS = 40  # digits of one integer literal; Python's own limit is 4,300
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_DEPTH = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def depth(body: bytes) -> int:
    """How deeply ``body``'s arrays and objects nest (brackets inside strings not counted)."""
    bare = _STRING.sub(b'""', body)
    return max(accumulate(_DEPTH.get(b, 0) for b in bare), default=0)


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise BadRequest(f"a number in the body has {len(text):,} digits; at most "
                         f"{MAX_NUMBER_CHARS} are accepted")
    return int(text)


def parse_json(body: bytes) -> Any:
    """The parsed body; :class:`BadRequest` for invalid, too deep or too long-numbered JSON."""
    if depth(body) > MAX_DEPTH:
        raise BadRequest(f"the body is nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(body, parse_int=_int)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON ({e})") from None
    except (ValueError, RecursionError) as e:  # a guard above missed a case: still a 400
        raise BadRequest(f"the body is not usable JSON ({type(e).__name__})") from None
