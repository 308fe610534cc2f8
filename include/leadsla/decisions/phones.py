"""Phone numbers: one form for keys and sends, and a masked form for every log, audit entry and notice.

A mobile number comes from the CRM user (`MobilePhone`) and is personal data: it is stored in the
outbox row that texts it (delivery needs it) and nowhere else in full. Whatever a person or a log
reads shows only its last digits (`mask_phone`): ``***4567``. `shown_recipient` is the one place
that decides how a message's recipient is written out, so SMS rows never leak a number through a
generic ``recipient`` field. Pure: no I/O.
"""

from __future__ import annotations

import re

#: The channel that carries phone numbers.
SMS = "sms"
#: Digits shown at the end of a masked number (the rest is never written out).
SHOWN_DIGITS = 3
#: A number as people type it: an optional +, digits, and spaces, dots, dashes or brackets between.
_TYPED = re.compile(r"^\+?[\d\s().\-]+$")
#: E.164 allows at most 15 digits; fewer than 8 is no mobile number anywhere.
MIN_DIGITS, MAX_DIGITS = 8, 15


def normalise_phone(value: str | None) -> str | None:
    """The number in international form (``+15551234567``), or None when it is not one.

    Spaces, dots, dashes and brackets are dropped; the number must start with + and a country
    code (the CRM's MobilePhone is free text: a local number cannot be texted from a gateway
    abroad without guessing its country, and we never guess).
    """
    text = (value or "").strip()
    if not text or not _TYPED.match(text) or not text.startswith("+"):
        return None
    digits = re.sub(r"\D", "", text)
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS or digits[0] == "0":
        return None
    return f"+{digits}"


def mask_phone(value: str | None) -> str:
    """``***567``: the last SHOWN_DIGITS digits only, whatever the input's form (or ``***``)."""
    digits = re.sub(r"\D", "", value or "")
    return "***" + digits[-SHOWN_DIGITS:] if len(digits) > SHOWN_DIGITS else "***"


#: A run of 6+ digits (with the separators people type) inside free text: a phone number to mask.
_IN_TEXT = re.compile(r"\+?\d[\d\s().\-]{4,}\d")


def mask_phones_in(text: str) -> str:
    """Free text (a client's log line, an error) with every phone-like digit run masked."""
    return _IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def shown_recipient(channel: str | None, recipient: str | None) -> str | None:
    """A message's recipient as logs and the audit trail show it: masked for SMS, as is otherwise."""
    if recipient is None:
        return None
    return mask_phone(recipient) if (channel or "").strip().lower() == SMS else recipient
