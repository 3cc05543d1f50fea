from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from shared import states

S = c.MessageStatus


def test_late_submitted_never_overwrites_delivered() -> None:
    assert not states.advances(S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_SUBMITTED)
    assert states.advances(S.MESSAGE_STATUS_SUBMITTED, S.MESSAGE_STATUS_DELIVERED)


def test_receipt_may_correct_an_assumed_delivery() -> None:
    assert states.advances(S.MESSAGE_STATUS_ASSUMED_DELIVERED, S.MESSAGE_STATUS_FAILED)
    assert not states.advances(S.MESSAGE_STATUS_FAILED, S.MESSAGE_STATUS_ASSUMED_DELIVERED)


def test_duplicate_state_is_not_an_advance() -> None:
    assert not states.advances(S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_DELIVERED)


def test_subject_names() -> None:
    assert states.message_subject(e.MESSAGE_EVENT_KIND_DELIVERED) == "events.message.delivered"
    assert states.message_subject(e.MESSAGE_EVENT_KIND_OPTED_OUT) == "events.message.opted_out"


def test_email_relay_acceptance_settles_but_sms_submission_does_not() -> None:
    assert states.is_final(S.MESSAGE_STATUS_SUBMITTED, c.CHANNEL_EMAIL)
    assert not states.is_final(S.MESSAGE_STATUS_SUBMITTED, c.CHANNEL_SMS)
