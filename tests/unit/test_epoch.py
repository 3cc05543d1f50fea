"""The Redis epoch rule: which unmarked, redelivered jobs may have been sent before a loss."""

from shared.epoch import maybe_sent_before_loss


def test_redelivered_unmarked_job_from_before_the_loss_may_have_been_sent() -> None:
    assert maybe_sent_before_loss(published_at=100.0, deliveries=2, has_marker=False, epoch_began=200.0)


def test_first_delivery_or_marked_or_published_after_the_epoch_is_safe_to_judge() -> None:
    assert not maybe_sent_before_loss(100.0, 1, False, 200.0)  # never delivered before
    assert not maybe_sent_before_loss(100.0, 2, True, 200.0)  # the marker says what happened
    assert not maybe_sent_before_loss(300.0, 2, False, 200.0)  # every attempt saw this epoch
