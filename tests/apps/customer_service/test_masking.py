"""Card numbers, IBANs, e-mail addresses and phone numbers never reach transcripts or logs unmasked."""

from __future__ import annotations

import logging

import pytest

from apps.customer_service.masking import MaskingFilter, mask_pii


@pytest.mark.parametrize(("text", "expected"), [
    ("my card 4111 1111 1111 1111 was stolen", "my card [CARD ****1111] was stolen"),
    ("card 5500-0000-0000-0004 please", "card [CARD ****0004] please"),
    ("number 4111111111111111", "number [CARD ****1111]"),
    ("send it to GB29 NWBK 6016 1331 9268 19 today", "send it to [IBAN GB…] today"),
    ("IBAN DE89370400440532013000", "IBAN [IBAN DE…]"),
    ("write to jane.doe+bank@example.co.uk", "write to [EMAIL]"),
    ("call me on +44 20 7946 0958", "call me on [PHONE]"),
    ("or 07700 900123 after six", "or [PHONE] after six"),
])
def test_mask_pii(text: str, expected: str) -> None:
    assert mask_pii(text) == expected


@pytest.mark.parametrize("text", [
    "the last four digits are 1234", "I lost it on 2024-05-01", "I took out 200 GBP at 10:30",
    "ticket T-000042", "transfer of 1,000.50 EUR",
])
def test_leaves_harmless_numbers_alone(text: str) -> None:
    assert mask_pii(text) == text


def test_masking_filter_masks_formatted_log_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.masking")
    logger.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO, logger="test.masking"):
        logger.info("customer %s paid with %s", "a@b.com", "4111 1111 1111 1111")
    assert caplog.messages == ["customer [EMAIL] paid with [CARD ****1111]"]


def test_rejects_non_text() -> None:
    with pytest.raises(TypeError, match="expected a string"):
        mask_pii(1234)
