"""What each channel's job carries: MessageJob.content (a oneof), read in one place.

Jobs queued before `content` existed carry their templates in the deprecated flat fields
(text, subject, html); the readers below fall back to them, so an upgrade never strands
queued jobs.
"""

from __future__ import annotations

from herald.v1 import events_pb2 as e

_EMPTY_SMS = e.SmsContent()
_EMPTY_EMAIL = e.EmailContent()


def sms_content(job: e.MessageJob) -> e.SmsContent:
    kind = job.WhichOneof("content")
    if kind == "sms":
        return job.sms
    if kind is None and job.text:  # queued by an older campaigns service
        return e.SmsContent(text=job.text)
    return _EMPTY_SMS


def email_content(job: e.MessageJob) -> e.EmailContent:
    kind = job.WhichOneof("content")
    if kind == "email":
        return job.email
    if kind is None and (job.subject or job.text or job.html):
        return e.EmailContent(subject=job.subject, text=job.text, html=job.html)
    return _EMPTY_EMAIL
