"""Card numbers, IBANs, e-mail addresses and phone numbers never reach transcripts or logs unmasked."""

from __future__ import annotations

import logging

import pytest

from apps.customer_service.masking import (
    MaskingFilter,
    has_masked_number,
    iban_valid,
    install_masking,
    luhn_valid,
    mask_pii,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("my card 4111 1111 1111 1111 was stolen", "my card [CARD ****1111] was stolen"),
    ("card 5500-0000-0000-0004 please", "card [CARD ****0004] please"),
    ("number 4111111111111111", "number [CARD ****1111]"),
    ("send it to GB29 NWBK 6016 1331 9268 19 today", "send it to [IBAN GB…] today"),
    ("IBAN DE89370400440532013000", "IBAN [IBAN DE…]"),
    ("write to jane.doe+bank@example.co.uk", "write to [EMAIL]"),
    ("call me on +44 20 7946 0958", "call me on [PHONE]"),
    ("or 07700 900123 after six", "or [PHONE] after six"),
    # cards: 13-19 Luhn-valid digits, spaced, dashed or together; other such runs become [NUMBER]
    ("4111 1111 1111 1111", "[CARD ****1111]"),
    ("4111-1111-1111-1111", "[CARD ****1111]"),
    ("amex 3782 822463 10005 ok", "amex [CARD ****0005] ok"),
    ("my card is 1234 5678 9012 3456", "my card is [NUMBER]"),
    ("reference 4111111111111112", "reference [NUMBER]"),
    # IBANs: any case with a valid mod-97 check; capitals even without
    ("GB82 WEST 1234 5698 7654 32", "[IBAN GB…]"),
    ("gb82west12345698765432", "[IBAN GB…]"),
    ("to Gb82 West 1234 5698 7654 32 please", "to [IBAN GB…] please"),
    ("gb82 west 1234 5698 7654 32 okay", "[IBAN GB…] okay"),
    ("GB00 WEST 1234 5698 7654 32", "[IBAN GB…]"),
    ("NO9386011117947", "[IBAN NO…]"),
    ("jane.doe@example.com", "[EMAIL]"),
    ("+44 20 7946 0958", "[PHONE]"),
    ("(555) 123-4567", "[PHONE]"),
    ("call 555-123-4567 now", "call [PHONE] now"),
])
def test_mask_pii(text: str, expected: str) -> None:
    assert mask_pii(text) == expected


def test_masking_is_idempotent() -> None:
    masked = mask_pii("card 4111 1111 1111 1111, gb82west12345698765432, a@b.com, +44 20 7946 0958, 1234567890123")
    assert masked == "card [CARD ****1111], [IBAN GB…], [EMAIL], [PHONE], [NUMBER]"
    assert mask_pii(masked) == masked


def test_checksums_on_known_answers() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005") and luhn_valid("5500000000000004")
    assert not luhn_valid("4111111111111112") and not luhn_valid("")
    assert iban_valid("GB82WEST12345698765432") and iban_valid("gb29nwbk60161331926819")
    assert iban_valid("DE89370400440532013000") and iban_valid("NO9386011117947")
    assert not iban_valid("GB83WEST12345698765432") and not iban_valid("GB82WEST1234")


def test_has_masked_number() -> None:
    assert has_masked_number("[CARD ****1111]") and has_masked_number("it is [NUMBER]")
    assert not has_masked_number("1234") and not has_masked_number("[PHONE]")


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


def test_install_masking_covers_loggers_with_their_own_handlers(capsys: pytest.CaptureFixture) -> None:
    """Like Sanic's loggers: own handler, no propagation to the root; tracebacks are masked too."""
    import sys

    logger = logging.getLogger("test.masking.sanic_like")
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    logger.propagate = False
    factory = logging.getLogRecordFactory()
    try:
        install_masking()
        install_masking()  # idempotent: one factory, one filter
        assert logging.getLogRecordFactory().masks_pii
        logger.warning("refund to %s", "GB82 WEST 1234 5698 7654 32")
        try:
            raise ValueError("bad card 4111 1111 1111 1111")
        except ValueError:
            logger.exception("failed for jane.doe@example.com")
    finally:
        logging.setLogRecordFactory(factory)
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "refund to [IBAN GB…]" in err and "failed for [EMAIL]" in err and "bad card [CARD ****1111]" in err
    assert "4111" not in err and "jane.doe" not in err and "WEST" not in err
