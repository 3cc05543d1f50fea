import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from herald.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportConflictPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_CONFLICT_POLICY_UNSPECIFIED: _ClassVar[ImportConflictPolicy]
    IMPORT_CONFLICT_POLICY_MERGE: _ClassVar[ImportConflictPolicy]
    IMPORT_CONFLICT_POLICY_SKIP: _ClassVar[ImportConflictPolicy]
    IMPORT_CONFLICT_POLICY_REJECT: _ClassVar[ImportConflictPolicy]

class CategoryView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATEGORY_VIEW_UNSPECIFIED: _ClassVar[CategoryView]
    CATEGORY_VIEW_BASIC: _ClassVar[CategoryView]
    CATEGORY_VIEW_FULL: _ClassVar[CategoryView]

class SuppressionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUPPRESSION_KIND_UNSPECIFIED: _ClassVar[SuppressionKind]
    SUPPRESSION_KIND_MANUAL: _ClassVar[SuppressionKind]
    SUPPRESSION_KIND_OPTED_OUT: _ClassVar[SuppressionKind]
    SUPPRESSION_KIND_BOUNCED: _ClassVar[SuppressionKind]
    SUPPRESSION_KIND_COMPLAINED: _ClassVar[SuppressionKind]
IMPORT_CONFLICT_POLICY_UNSPECIFIED: ImportConflictPolicy
IMPORT_CONFLICT_POLICY_MERGE: ImportConflictPolicy
IMPORT_CONFLICT_POLICY_SKIP: ImportConflictPolicy
IMPORT_CONFLICT_POLICY_REJECT: ImportConflictPolicy
CATEGORY_VIEW_UNSPECIFIED: CategoryView
CATEGORY_VIEW_BASIC: CategoryView
CATEGORY_VIEW_FULL: CategoryView
SUPPRESSION_KIND_UNSPECIFIED: SuppressionKind
SUPPRESSION_KIND_MANUAL: SuppressionKind
SUPPRESSION_KIND_OPTED_OUT: SuppressionKind
SUPPRESSION_KIND_BOUNCED: SuppressionKind
SUPPRESSION_KIND_COMPLAINED: SuppressionKind

class Sender(_message.Message):
    __slots__ = ("workspace_id", "channel", "address", "created_at")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    channel: _common_pb2.Channel
    address: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, workspace_id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., address: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterSenderRequest(_message.Message):
    __slots__ = ("request_id", "channel", "address")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    channel: _common_pb2.Channel
    address: str
    def __init__(self, request_id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., address: _Optional[str] = ...) -> None: ...

class ListSendersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListSendersResponse(_message.Message):
    __slots__ = ("senders", "next_page_token")
    SENDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    senders: _containers.RepeatedCompositeFieldContainer[Sender]
    next_page_token: str
    def __init__(self, senders: _Optional[_Iterable[_Union[Sender, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSenderRequest(_message.Message):
    __slots__ = ("request_id", "channel", "address")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    channel: _common_pb2.Channel
    address: str
    def __init__(self, request_id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., address: _Optional[str] = ...) -> None: ...

class ValidateTargetsRequest(_message.Message):
    __slots__ = ("channel", "sender", "category_ids", "inline", "categories_field", "inline_field", "sender_field")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_IDS_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_FIELD_NUMBER: _ClassVar[int]
    channel: _common_pb2.Channel
    sender: str
    category_ids: _containers.RepeatedScalarFieldContainer[str]
    inline: _containers.RepeatedCompositeFieldContainer[_common_pb2.Recipient]
    categories_field: str
    inline_field: str
    sender_field: str
    def __init__(self, channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., sender: _Optional[str] = ..., category_ids: _Optional[_Iterable[str]] = ..., inline: _Optional[_Iterable[_Union[_common_pb2.Recipient, _Mapping]]] = ..., categories_field: _Optional[str] = ..., inline_field: _Optional[str] = ..., sender_field: _Optional[str] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ValidateTargetsResponse(_message.Message):
    __slots__ = ("violations", "field_names")
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    FIELD_NAMES_FIELD_NUMBER: _ClassVar[int]
    violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    field_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ..., field_names: _Optional[_Iterable[str]] = ...) -> None: ...

class Contact(_message.Message):
    __slots__ = ("id", "workspace_id", "phone", "email", "first_name", "last_name", "fields", "category_ids", "external_id", "created_at", "language")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_NAME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_IDS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    workspace_id: str
    phone: str
    email: str
    first_name: str
    last_name: str
    fields: _containers.ScalarMap[str, str]
    category_ids: _containers.RepeatedScalarFieldContainer[str]
    external_id: str
    created_at: _timestamp_pb2.Timestamp
    language: str
    def __init__(self, id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., phone: _Optional[str] = ..., email: _Optional[str] = ..., first_name: _Optional[str] = ..., last_name: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., category_ids: _Optional[_Iterable[str]] = ..., external_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., language: _Optional[str] = ...) -> None: ...

class UpsertContactsRequest(_message.Message):
    __slots__ = ("request_id", "contacts")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    contacts: _containers.RepeatedCompositeFieldContainer[Contact]
    def __init__(self, request_id: _Optional[str] = ..., contacts: _Optional[_Iterable[_Union[Contact, _Mapping]]] = ...) -> None: ...

class ContactResult(_message.Message):
    __slots__ = ("index", "contact_id", "created", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    contact_id: str
    created: bool
    error: str
    def __init__(self, index: _Optional[int] = ..., contact_id: _Optional[str] = ..., created: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class UpsertContactsResponse(_message.Message):
    __slots__ = ("results", "created", "updated", "rejected")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ContactResult]
    created: int
    updated: int
    rejected: int
    def __init__(self, results: _Optional[_Iterable[_Union[ContactResult, _Mapping]]] = ..., created: _Optional[int] = ..., updated: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class ImportContactsOptions(_message.Message):
    __slots__ = ("request_id", "categories", "create_missing_categories", "on_conflict")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    CREATE_MISSING_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    ON_CONFLICT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    create_missing_categories: bool
    on_conflict: ImportConflictPolicy
    def __init__(self, request_id: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., create_missing_categories: _Optional[bool] = ..., on_conflict: _Optional[_Union[ImportConflictPolicy, str]] = ...) -> None: ...

class ImportContactsRequest(_message.Message):
    __slots__ = ("options", "contacts", "lines")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    options: ImportContactsOptions
    contacts: _containers.RepeatedCompositeFieldContainer[Contact]
    lines: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, options: _Optional[_Union[ImportContactsOptions, _Mapping]] = ..., contacts: _Optional[_Iterable[_Union[Contact, _Mapping]]] = ..., lines: _Optional[_Iterable[int]] = ...) -> None: ...

class ImportRowError(_message.Message):
    __slots__ = ("line", "field", "description")
    LINE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    line: int
    field: str
    description: str
    def __init__(self, line: _Optional[int] = ..., field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ImportContactsResponse(_message.Message):
    __slots__ = ("rows", "created", "updated", "unchanged", "rejected", "errors", "created_category_ids")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    CREATED_CATEGORY_IDS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    errors: _containers.RepeatedCompositeFieldContainer[ImportRowError]
    created_category_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rows: _Optional[int] = ..., created: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., rejected: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[ImportRowError, _Mapping]]] = ..., created_category_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetContactRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListContactsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter", "order_by")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    order_by: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListContactsResponse(_message.Message):
    __slots__ = ("contacts", "next_page_token", "total_size")
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    contacts: _containers.RepeatedCompositeFieldContainer[Contact]
    next_page_token: str
    total_size: int
    def __init__(self, contacts: _Optional[_Iterable[_Union[Contact, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class Category(_message.Message):
    __slots__ = ("id", "workspace_id", "name", "contacts_count")
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTACTS_COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    workspace_id: str
    name: str
    contacts_count: int
    def __init__(self, id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., name: _Optional[str] = ..., contacts_count: _Optional[int] = ...) -> None: ...

class CreateCategoryRequest(_message.Message):
    __slots__ = ("request_id", "name")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class UpdateCategoryRequest(_message.Message):
    __slots__ = ("request_id", "category", "update_mask")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    category: Category
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, request_id: _Optional[str] = ..., category: _Optional[_Union[Category, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteCategoryRequest(_message.Message):
    __slots__ = ("request_id", "id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    id: str
    def __init__(self, request_id: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class ListCategoriesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "view")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    view: CategoryView
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., view: _Optional[_Union[CategoryView, str]] = ...) -> None: ...

class ListCategoriesResponse(_message.Message):
    __slots__ = ("categories", "next_page_token")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedCompositeFieldContainer[Category]
    next_page_token: str
    def __init__(self, categories: _Optional[_Iterable[_Union[Category, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ResolveAudienceRequest(_message.Message):
    __slots__ = ("channel", "category_ids", "inline")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_IDS_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    channel: _common_pb2.Channel
    category_ids: _containers.RepeatedScalarFieldContainer[str]
    inline: _containers.RepeatedCompositeFieldContainer[_common_pb2.Recipient]
    def __init__(self, channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., category_ids: _Optional[_Iterable[str]] = ..., inline: _Optional[_Iterable[_Union[_common_pb2.Recipient, _Mapping]]] = ...) -> None: ...

class AudienceMember(_message.Message):
    __slots__ = ("recipient", "accepted", "rejection", "rejection_reason")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTION_FIELD_NUMBER: _ClassVar[int]
    REJECTION_REASON_FIELD_NUMBER: _ClassVar[int]
    recipient: _common_pb2.Recipient
    accepted: bool
    rejection: _common_pb2.FailureCategory
    rejection_reason: str
    def __init__(self, recipient: _Optional[_Union[_common_pb2.Recipient, _Mapping]] = ..., accepted: _Optional[bool] = ..., rejection: _Optional[_Union[_common_pb2.FailureCategory, str]] = ..., rejection_reason: _Optional[str] = ...) -> None: ...

class AudienceChunk(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[AudienceMember]
    def __init__(self, members: _Optional[_Iterable[_Union[AudienceMember, _Mapping]]] = ...) -> None: ...

class Suppression(_message.Message):
    __slots__ = ("workspace_id", "channel", "address", "reason", "created_at", "id", "kind")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    channel: _common_pb2.Channel
    address: str
    reason: str
    created_at: _timestamp_pb2.Timestamp
    id: str
    kind: SuppressionKind
    def __init__(self, workspace_id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., address: _Optional[str] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., id: _Optional[str] = ..., kind: _Optional[_Union[SuppressionKind, str]] = ...) -> None: ...

class AddSuppressionRequest(_message.Message):
    __slots__ = ("request_id", "channel", "address", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    channel: _common_pb2.Channel
    address: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., address: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RemoveSuppressionRequest(_message.Message):
    __slots__ = ("request_id", "id", "channel", "address", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    id: str
    channel: _common_pb2.Channel
    address: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., id: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., address: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListSuppressionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListSuppressionsResponse(_message.Message):
    __slots__ = ("suppressions", "next_page_token")
    SUPPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    suppressions: _containers.RepeatedCompositeFieldContainer[Suppression]
    next_page_token: str
    def __init__(self, suppressions: _Optional[_Iterable[_Union[Suppression, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
