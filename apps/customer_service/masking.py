"""Mask personal data in transcripts and logs: card numbers, IBANs, e-mail addresses, phone numbers.

Masks keep just enough to be useful to an agent (a card's last four digits, an IBAN's country)
and nothing that identifies the customer:

* ``[EMAIL]``: an e-mail address;
* ``[IBAN GB…]``: an IBAN in any case, in groups of four or written together, when its mod-97
  check holds; an IBAN-shaped run in capitals (two letters, two digits, 11-30 letters or digits)
  is masked even when the check fails (a mistyped IBAN is still personal data);
* ``[CARD ****1234]``: 13-19 digits, optionally with single spaces or dashes between them, that pass
  the Luhn check (every real card number does);
* ``[NUMBER]``: 13-19 digits that fail the Luhn check: a mistyped card number or an account
  reference, masked rather than stored raw because nothing tells which;
* ``[PHONE]``: 9-14 digits with an optional ``+``/``00`` country prefix and spaces, dots, dashes
  or brackets between them.

Order matters: e-mails first (their digits are not phone numbers), then IBANs (which contain long
digit runs), then card numbers, then phones. Masking is idempotent: a masked text stays as it is.

Standard library only, and Python 3.10-compatible: the Rasa server (its own Python 3.10
environment) imports this module for its masking input channels (``rasa/channels/masked.py``).
"""

from __future__ import annotations

import logging
import re

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# any case: country, check digits, then groups of four (spaced or not) and a last group of 1-4
IBAN_ANY_CASE = re.compile(r"\b([A-Za-z]{2})(\d{2})((?:[ ]?[A-Za-z0-9]{4}){2,7}(?:[ ]?[A-Za-z0-9]{1,4})?)\b")
# capitals only: two letters, two check digits, then 11-30 letters/digits, optionally in groups
IBAN = re.compile(r"\b([A-Z]{2})\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
# 13-19 digits, optionally separated by single spaces or dashes (Visa, Mastercard, Amex, ...)
CARD = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
# an optional +country code, then 9-14 digits with spaces, dots, dashes or brackets between them
PHONE = re.compile(r"(?<![\w])(?:\+|00)?\(?\d{1,4}\)?(?:[ .-]?\(?\d\)?){8,13}(?![\w])")
# what CARD matches after masking: a form that asks for four digits must not read "1234" out of it
MASKED_NUMBER = re.compile(r"\[(?:CARD \*{4}\d{4}|NUMBER)\]")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (card numbers pass it, most other numbers do not)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return bool(digits) and total % 10 == 0


def iban_valid(compact: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN without spaces (any case), 15-34 characters."""
    compact = compact.upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _mask_iban_any_case(match: re.Match) -> str:
    """The longest prefix of the match (cut at a space) that is a valid IBAN, masked; else the match as is."""
    text = match.group()
    ends = [len(text)] + [i for i in range(len(text) - 1, 3, -1) if text[i] == " "]
    for end in ends:  # a following four-letter word ("... 3200 okay") may have joined the last group
        if iban_valid(text[:end].replace(" ", "")):
            return f"[IBAN {text[:2].upper()}…]{text[end:]}"
    return text


def _mask_digits(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return f"[CARD ****{digits[-4:]}]" if luhn_valid(digits) else "[NUMBER]"


def mask_pii(text: str) -> str:
    """``text`` with personal data replaced by ``[EMAIL]``, ``[IBAN GB…]``, ``[CARD ****1234]``, ``[NUMBER]``,
    ``[PHONE]`` (see the module doc for what each covers)."""
    if not isinstance(text, str):
        raise TypeError(f"mask_pii got {type(text).__name__}; expected a string")
    text = EMAIL.sub("[EMAIL]", text)
    text = IBAN_ANY_CASE.sub(_mask_iban_any_case, text)
    text = IBAN.sub(lambda m: f"[IBAN {m.group(1)}…]", text)
    text = CARD.sub(_mask_digits, text)
    return PHONE.sub("[PHONE]", text)


def has_masked_number(text: str) -> bool:
    """Whether ``text`` holds a masked 13-19-digit number (``[CARD ****1234]`` or ``[NUMBER]``)."""
    return bool(MASKED_NUMBER.search(text))


def mask_record(record: logging.LogRecord) -> None:
    """Mask ``record`` in place: its formatted message, and its traceback and stack text if any."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        return  # a broken format string: logging reports it when the record is emitted
    record.msg, record.args = mask_pii(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_pii(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_pii(record.stack_info)


class MaskingFilter(logging.Filter):
    """A logging filter that masks personal data in every record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


def install_masking(logger: logging.Logger | None = None) -> None:
    """Mask personal data in every log record this process creates, whichever logger or handler writes it.

    A record factory masks each record as it is made, so loggers with their own handlers that do
    not propagate to the root (Sanic's ``sanic.*``, loggers configured later by ``dictConfig``) are
    covered too; a :class:`MaskingFilter` on the handlers of ``logger`` (default: the root logger)
    also catches records built without the factory (``logging.makeLogRecord``). Idempotent.
    """
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "masks_pii", False):
        def masking_factory(*args, **kwargs) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            mask_record(record)
            return record

        masking_factory.masks_pii = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(masking_factory)
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
