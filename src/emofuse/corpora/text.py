"""Text repair shared by the table adapters: mojibake (UTF-8 read as cp1252 or latin-1)."""

from __future__ import annotations

import re

# Mojibake is UTF-8 read as cp1252 (or latin-1): "’" (E2 80 99) shows as "â€™". A run of one
# UTF-8 lead character and its continuation characters is mapped back to bytes and decoded;
# runs that do not decode stay as they are. Only strings carrying a marker of the common cases
# (â€ for punctuation, Ã and Â for accented letters and symbols) are touched, so that correct text
# such as "CAFÉ’s" (É’ happens to look like a lead and a continuation byte) is never rewritten.
_MARKERS = ("\u00e2\u20ac", "\u00e2\u0080", "\u00c3", "\u00c2")
_TO_BYTE: dict[str, int] = {}
for _b in range(0x80, 0x100):
    _TO_BYTE[chr(_b)] = _b  # latin-1 reading (also cp1252's undefined 0x81, 0x8D, 0x8F, 0x90, 0x9D)
    try:
        _TO_BYTE[bytes([_b]).decode("cp1252")] = _b
    except UnicodeDecodeError:
        pass
_CONT = "".join(re.escape(c) for c, b in _TO_BYTE.items() if 0x80 <= b <= 0xBF)
_MOJIBAKE = re.compile(
    f"[\u00c2-\u00df][{_CONT}]|[\u00e0-\u00ef][{_CONT}]{{2}}|[\u00f0-\u00f4][{_CONT}]{{3}}"
)
# "”" is E2 80 9D and cp1252 has no character for 9D, so most converters dropped it (or wrote U+FFFD):
# a bare "â€" is that right double quote.
_LOST_RDQUO = re.compile(f"\u00e2\u20ac\ufffd?(?![{_CONT}])")
# C1 control characters never occur in text: they are cp1252 bytes read as latin-1 ("It\x92s").
_C1 = re.compile("[\u0080-\u009f]")


def _undo(match: re.Match) -> str:
    s = match.group(0)
    try:
        return bytes(_TO_BYTE[c] for c in s).decode("utf-8")
    except UnicodeDecodeError:
        return s


def _c1(match: re.Match) -> str:
    try:
        return match.group(0).encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D mean nothing in cp1252 either
        return match.group(0)


def fix_mojibake(s: str) -> str:
    """Repair UTF-8 text that was decoded as cp1252 or latin-1 ("Itâ€™s" -> "It’s"); text without
    mojibake markers is returned unchanged."""
    if not s:
        return s
    if any(m in s for m in _MARKERS):
        s = _MOJIBAKE.sub(_undo, _LOST_RDQUO.sub("\u201d", s))
    return _C1.sub(_c1, s)
