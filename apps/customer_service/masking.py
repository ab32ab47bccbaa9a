"""Mask personal data in transcripts and logs: card numbers, IBANs, e-mail addresses, phone numbers.

Masks keep just enough to be useful to an agent (a card's last four digits, an IBAN's country)
and nothing that identifies the customer. Order matters: e-mails first (their digits are not
phone numbers), then IBANs (which contain long digit runs), then card numbers, then phones.
"""

from __future__ import annotations

import logging
import re

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# two letters, two check digits, then 11-30 letters/digits, optionally in groups of four
IBAN = re.compile(r"\b([A-Z]{2})\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
# 13-19 digits, optionally separated by single spaces or dashes (Visa, Mastercard, Amex, ...)
CARD = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
# an optional +country code, then 9-14 digits with spaces, dots, dashes or brackets between them
PHONE = re.compile(r"(?<![\w])(?:\+|00)?\(?\d{1,4}\)?(?:[ .-]?\(?\d\)?){8,13}(?![\w])")


def _mask_card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return f"[CARD ****{digits[-4:]}]"


def mask_pii(text: str) -> str:
    """``text`` with personal data replaced by ``[EMAIL]``, ``[IBAN GB…]``, ``[CARD ****1234]``, ``[PHONE]``."""
    if not isinstance(text, str):
        raise TypeError(f"mask_pii got {type(text).__name__}; expected a string")
    text = EMAIL.sub("[EMAIL]", text)
    text = IBAN.sub(lambda m: f"[IBAN {m.group(1)}…]", text)
    text = CARD.sub(_mask_card, text)
    return PHONE.sub("[PHONE]", text)


class MaskingFilter(logging.Filter):
    """A logging filter that masks personal data in every record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        record.msg, record.args = mask_pii(message), None
        return True


def install_masking(logger: logging.Logger | None = None) -> None:
    """Mask personal data in everything the handlers of ``logger`` (default: the root logger) write."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
