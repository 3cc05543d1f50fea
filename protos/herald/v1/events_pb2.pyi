import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from herald.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_EVENT_KIND_UNSPECIFIED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_QUEUED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_SUBMITTED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_DELIVERED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_FAILED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_DEFERRED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_OPENED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_CLICKED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_REPLIED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_BOUNCED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_OPTED_OUT: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_ASSUMED_DELIVERED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_CANCELLED: _ClassVar[MessageEventKind]
    MESSAGE_EVENT_KIND_SENDING: _ClassVar[MessageEventKind]

class CampaignEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_EVENT_KIND_UNSPECIFIED: _ClassVar[CampaignEventKind]
    CAMPAIGN_EVENT_KIND_STATUS_CHANGED: _ClassVar[CampaignEventKind]
    CAMPAIGN_EVENT_KIND_BUILT: _ClassVar[CampaignEventKind]

class ContactEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTACT_EVENT_KIND_UNSPECIFIED: _ClassVar[ContactEventKind]
    CONTACT_EVENT_KIND_OPTED_OUT: _ClassVar[ContactEventKind]
    CONTACT_EVENT_KIND_BOUNCED: _ClassVar[ContactEventKind]
    CONTACT_EVENT_KIND_COMPLAINED: _ClassVar[ContactEventKind]
MESSAGE_EVENT_KIND_UNSPECIFIED: MessageEventKind
MESSAGE_EVENT_KIND_QUEUED: MessageEventKind
MESSAGE_EVENT_KIND_SUBMITTED: MessageEventKind
MESSAGE_EVENT_KIND_DELIVERED: MessageEventKind
MESSAGE_EVENT_KIND_FAILED: MessageEventKind
MESSAGE_EVENT_KIND_DEFERRED: MessageEventKind
MESSAGE_EVENT_KIND_OPENED: MessageEventKind
MESSAGE_EVENT_KIND_CLICKED: MessageEventKind
MESSAGE_EVENT_KIND_REPLIED: MessageEventKind
MESSAGE_EVENT_KIND_BOUNCED: MessageEventKind
MESSAGE_EVENT_KIND_OPTED_OUT: MessageEventKind
MESSAGE_EVENT_KIND_ASSUMED_DELIVERED: MessageEventKind
MESSAGE_EVENT_KIND_CANCELLED: MessageEventKind
MESSAGE_EVENT_KIND_SENDING: MessageEventKind
CAMPAIGN_EVENT_KIND_UNSPECIFIED: CampaignEventKind
CAMPAIGN_EVENT_KIND_STATUS_CHANGED: CampaignEventKind
CAMPAIGN_EVENT_KIND_BUILT: CampaignEventKind
CONTACT_EVENT_KIND_UNSPECIFIED: ContactEventKind
CONTACT_EVENT_KIND_OPTED_OUT: ContactEventKind
CONTACT_EVENT_KIND_BOUNCED: ContactEventKind
CONTACT_EVENT_KIND_COMPLAINED: ContactEventKind

class MessageJob(_message.Message):
    __slots__ = ("message_id", "campaign_id", "workspace_id", "channel", "attempt", "sender", "to", "contact_id", "variant", "fields", "text", "subject", "html", "created_at", "expires_at", "sms", "email", "postback")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SMS_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    POSTBACK_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    campaign_id: str
    workspace_id: str
    channel: _common_pb2.Channel
    attempt: int
    sender: str
    to: str
    contact_id: str
    variant: str
    fields: _containers.ScalarMap[str, str]
    text: str
    subject: str
    html: str
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    sms: SmsContent
    email: EmailContent
    postback: PostbackContent
    def __init__(self, message_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., attempt: _Optional[int] = ..., sender: _Optional[str] = ..., to: _Optional[str] = ..., contact_id: _Optional[str] = ..., variant: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., text: _Optional[str] = ..., subject: _Optional[str] = ..., html: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sms: _Optional[_Union[SmsContent, _Mapping]] = ..., email: _Optional[_Union[EmailContent, _Mapping]] = ..., postback: _Optional[_Union[PostbackContent, _Mapping]] = ...) -> None: ...

class SmsContent(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class PostbackContent(_message.Message):
    __slots__ = ("body",)
    BODY_FIELD_NUMBER: _ClassVar[int]
    body: str
    def __init__(self, body: _Optional[str] = ...) -> None: ...

class EmailContent(_message.Message):
    __slots__ = ("subject", "text", "html")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    subject: str
    text: str
    html: str
    def __init__(self, subject: _Optional[str] = ..., text: _Optional[str] = ..., html: _Optional[str] = ...) -> None: ...

class MessageEvent(_message.Message):
    __slots__ = ("event_id", "kind", "message_id", "campaign_id", "workspace_id", "channel", "status", "occurred_at", "carrier_result", "error_code", "error_description", "failure_category", "provider_message_id", "parts", "variant", "to", "attempt", "link_index", "url", "ip", "user_agent", "machine_open", "reply_text", "reply_from", "route")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    CARRIER_RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FAILURE_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LINK_INDEX_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    MACHINE_OPEN_FIELD_NUMBER: _ClassVar[int]
    REPLY_TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_FROM_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: MessageEventKind
    message_id: str
    campaign_id: str
    workspace_id: str
    channel: _common_pb2.Channel
    status: _common_pb2.MessageStatus
    occurred_at: _timestamp_pb2.Timestamp
    carrier_result: str
    error_code: str
    error_description: str
    failure_category: _common_pb2.FailureCategory
    provider_message_id: str
    parts: int
    variant: str
    to: str
    attempt: int
    link_index: int
    url: str
    ip: str
    user_agent: str
    machine_open: bool
    reply_text: str
    reply_from: str
    route: str
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[_Union[MessageEventKind, str]] = ..., message_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., status: _Optional[_Union[_common_pb2.MessageStatus, str]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., carrier_result: _Optional[str] = ..., error_code: _Optional[str] = ..., error_description: _Optional[str] = ..., failure_category: _Optional[_Union[_common_pb2.FailureCategory, str]] = ..., provider_message_id: _Optional[str] = ..., parts: _Optional[int] = ..., variant: _Optional[str] = ..., to: _Optional[str] = ..., attempt: _Optional[int] = ..., link_index: _Optional[int] = ..., url: _Optional[str] = ..., ip: _Optional[str] = ..., user_agent: _Optional[str] = ..., machine_open: _Optional[bool] = ..., reply_text: _Optional[str] = ..., reply_from: _Optional[str] = ..., route: _Optional[str] = ...) -> None: ...

class MessageEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[MessageEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[MessageEvent, _Mapping]]] = ...) -> None: ...

class CampaignEvent(_message.Message):
    __slots__ = ("event_id", "kind", "campaign_id", "workspace_id", "status", "previous_status", "reason", "total_messages", "occurred_at", "actor")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: CampaignEventKind
    campaign_id: str
    workspace_id: str
    status: str
    previous_status: str
    reason: str
    total_messages: int
    occurred_at: _timestamp_pb2.Timestamp
    actor: str
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[_Union[CampaignEventKind, str]] = ..., campaign_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., status: _Optional[str] = ..., previous_status: _Optional[str] = ..., reason: _Optional[str] = ..., total_messages: _Optional[int] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ...) -> None: ...

class ContactEvent(_message.Message):
    __slots__ = ("event_id", "kind", "workspace_id", "channel", "address", "contact_id", "message_id", "campaign_id", "reason", "occurred_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: ContactEventKind
    workspace_id: str
    channel: _common_pb2.Channel
    address: str
    contact_id: str
    message_id: str
    campaign_id: str
    reason: str
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[_Union[ContactEventKind, str]] = ..., workspace_id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., address: _Optional[str] = ..., contact_id: _Optional[str] = ..., message_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., reason: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UnmatchedReceipt(_message.Message):
    __slots__ = ("event_id", "provider_ids", "source_address", "route", "stat", "error_code", "occurred_at", "parts")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_IDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    STAT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    provider_ids: _containers.RepeatedScalarFieldContainer[str]
    source_address: str
    route: str
    stat: str
    error_code: str
    occurred_at: _timestamp_pb2.Timestamp
    parts: int
    def __init__(self, event_id: _Optional[str] = ..., provider_ids: _Optional[_Iterable[str]] = ..., source_address: _Optional[str] = ..., route: _Optional[str] = ..., stat: _Optional[str] = ..., error_code: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., parts: _Optional[int] = ...) -> None: ...
