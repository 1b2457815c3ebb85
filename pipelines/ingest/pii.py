"""PII scrubbing: e-mail addresses, URLs and phone numbers become placeholders, counted per kind.

URLs are links with a scheme or "www.", and bare domains with a path ("facebook.com/NewAirUSA").

The placeholders are bracketed words (`[EMAIL]`, `[URL]`, `[PHONE]`), not `<EMAIL>`: text is
cleaned again downstream, and the HTML tag stripper would remove anything that looks like a tag.
The rules favour precision: a phone number needs a `+` country code, a bracketed area code, or
three digit groups joined by dashes or dots (or the 11-digit Chinese mobile form), so dates,
prices, amounts written with spaces, model numbers and years survive.
"""

from __future__ import annotations

import re

EMAIL = "[EMAIL]"
URL = "[URL]"
PHONE = "[PHONE]"
PII_KINDS = ("email", "url", "phone")

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# A URL runs to the next whitespace or quote; sentence punctuation at its end stays outside.
_URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"'\]]+?(?=[.,;:!?)\]'\"]*(?:\s|$))",
                  re.IGNORECASE)
# A bare domain with a path, no scheme ("facebook.com/NewAirUSA", "bit.ly/3xYz"): a top-level
# domain from the common generic ones or a two-letter country code, then "/" and URL characters
# (sentence punctuation counts only inside the path). A bare "Amazon.com" stays: a shop's name,
# not a link to a person; "e.g./i.e.", "4.5/5" and "v1.2/1.3" have no such top-level domain.
_TLDS = ("com|net|org|edu|gov|mil|int|info|biz|name|pro|io|co|ai|app|dev|me|tv|ly|gl|fm|to|cc|"
         "xyz|online|site|shop|store|blog|news|tech|club|link|page|[a-z]{2}")
_URL_CHAR = r"[A-Za-z0-9\-_~/?#@$&*+=%]"
_BARE_URL = re.compile(
    r"(?<![A-Za-z0-9@./:_-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    rf"(?:{_TLDS})/(?:{_URL_CHAR}|[.,;:!](?={_URL_CHAR}))*",
    re.IGNORECASE,
)
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){1,3}"  # +44 20 7946 0958
    r"|(?:\d{1,3}[.-])?\d{2,4}[.-]\d{3,4}[.-]\d{4}"  # 1-800-555-1234, 555.123.4567
    r"|(?:\d{1,3}\s?)?\(\d{2,4}\)\s?\d{3,4}[\s.-]\d{3,4}"  # (555) 123-4567
    r")(?![\w-])"
    r"|(?<!\d)1[3-9]\d{9}(?!\d)"  # Chinese mobile numbers, often between Han characters
)
_DIGITS = re.compile(r"\d{3}")


# One replacement: (start, end) in the text before its pass, and the placeholder's length.
Edit = tuple[int, int, int]


def _sub(pattern: re.Pattern, placeholder: str, text: str, edits: list[list[Edit]]
         ) -> tuple[str, int]:
    spans: list[Edit] = []

    def replace(match: re.Match) -> str:
        spans.append((match.start(), match.end(), len(placeholder)))
        return placeholder

    text = pattern.sub(replace, text)
    if spans:
        edits.append(spans)
    return text, len(spans)


def scrub_pii_edits(text: str) -> tuple[str, dict[str, int], list[list[Edit]]]:
    """`scrub_pii`, plus the edits of each pass, for `shift_offset` to move character offsets."""
    found: dict[str, int] = {}
    edits: list[list[Edit]] = []
    passes = (
        ("email", _EMAIL, EMAIL, "@" in text),
        ("url", _URL, URL, "://" in text or "www." in text.lower()),
        ("url", _BARE_URL, URL, "/" in text and "." in text),
        ("phone", _PHONE, PHONE, True),
    )
    for kind, pattern, placeholder, maybe in passes:
        # Cheap substring tests skip the regular expressions for the common text without PII.
        if not maybe or (kind == "phone" and not _DIGITS.search(text)):
            continue
        text, n = _sub(pattern, placeholder, text, edits)
        if n:
            found[kind] = found.get(kind, 0) + n
    return text, found, edits


def scrub_pii(text: str) -> tuple[str, dict[str, int]]:
    """(text with PII replaced, {kind: replacements}); kinds with no replacement are omitted."""
    scrubbed, found, _ = scrub_pii_edits(text)
    return scrubbed, found


def shift_offset(offset: int, edits: list[list[Edit]]) -> int:
    """Where a character offset of the original text lands after the edits (an offset inside a
    replaced span moves to the span's end, so aspect spans stay within the text)."""
    for spans in edits:
        shift = 0
        for start, end, length in spans:
            if offset > start and offset < end:
                offset = end  # inside a replaced span: snap to its end
            if offset < end:
                break
            shift += length - (end - start)
        offset += shift
    return offset
