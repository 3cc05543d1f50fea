from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_SMS: _ClassVar[Channel]
    CHANNEL_EMAIL: _ClassVar[Channel]
    CHANNEL_POSTBACK: _ClassVar[Channel]

class MessageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STATUS_UNSPECIFIED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_QUEUED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SENDING: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SUBMITTED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_DELIVERED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_ASSUMED_DELIVERED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_DEFERRED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_FAILED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_OPTED_OUT: _ClassVar[MessageStatus]
    MESSAGE_STATUS_CANCELLED: _ClassVar[MessageStatus]

class FailureCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_CATEGORY_UNSPECIFIED: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_INVALID_ADDRESS: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_UNSUBSCRIBED: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_CARRIER_REJECTED: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_THROTTLED: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_CONTENT_REJECTED: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_CONFIG_ERROR: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_EXPIRED: _ClassVar[FailureCategory]
    FAILURE_CATEGORY_UNKNOWN: _ClassVar[FailureCategory]
CHANNEL_UNSPECIFIED: Channel
CHANNEL_SMS: Channel
CHANNEL_EMAIL: Channel
CHANNEL_POSTBACK: Channel
MESSAGE_STATUS_UNSPECIFIED: MessageStatus
MESSAGE_STATUS_QUEUED: MessageStatus
MESSAGE_STATUS_SENDING: MessageStatus
MESSAGE_STATUS_SUBMITTED: MessageStatus
MESSAGE_STATUS_DELIVERED: MessageStatus
MESSAGE_STATUS_ASSUMED_DELIVERED: MessageStatus
MESSAGE_STATUS_DEFERRED: MessageStatus
MESSAGE_STATUS_FAILED: MessageStatus
MESSAGE_STATUS_OPTED_OUT: MessageStatus
MESSAGE_STATUS_CANCELLED: MessageStatus
FAILURE_CATEGORY_UNSPECIFIED: FailureCategory
FAILURE_CATEGORY_INVALID_ADDRESS: FailureCategory
FAILURE_CATEGORY_UNSUBSCRIBED: FailureCategory
FAILURE_CATEGORY_CARRIER_REJECTED: FailureCategory
FAILURE_CATEGORY_THROTTLED: FailureCategory
FAILURE_CATEGORY_CONTENT_REJECTED: FailureCategory
FAILURE_CATEGORY_CONFIG_ERROR: FailureCategory
FAILURE_CATEGORY_EXPIRED: FailureCategory
FAILURE_CATEGORY_UNKNOWN: FailureCategory

class Recipient(_message.Message):
    __slots__ = ("contact_id", "phone", "email", "first_name", "last_name", "fields", "external_id", "language")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_NAME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    contact_id: str
    phone: str
    email: str
    first_name: str
    last_name: str
    fields: _containers.ScalarMap[str, str]
    external_id: str
    language: str
    def __init__(self, contact_id: _Optional[str] = ..., phone: _Optional[str] = ..., email: _Optional[str] = ..., first_name: _Optional[str] = ..., last_name: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., external_id: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...
