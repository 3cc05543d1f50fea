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

class CampaignStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_STATUS_UNSPECIFIED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_DRAFT: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_NEW: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_PENDING: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_BUILDING: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_SENDING: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_PAUSED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_DONE: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_CANCELLED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_FAILED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_EXPIRED: _ClassVar[CampaignStatus]

class CampaignMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_MODE_UNSPECIFIED: _ClassVar[CampaignMode]
    CAMPAIGN_MODE_ON_DEMAND: _ClassVar[CampaignMode]
    CAMPAIGN_MODE_ON_TIME: _ClassVar[CampaignMode]
    CAMPAIGN_MODE_SPREAD: _ClassVar[CampaignMode]
    CAMPAIGN_MODE_TRIGGER: _ClassVar[CampaignMode]

class ModerationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODERATION_STATE_UNSPECIFIED: _ClassVar[ModerationState]
    MODERATION_STATE_PENDING: _ClassVar[ModerationState]
    MODERATION_STATE_APPROVED: _ClassVar[ModerationState]
    MODERATION_STATE_REJECTED: _ClassVar[ModerationState]

class CampaignOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_OUTCOME_UNSPECIFIED: _ClassVar[CampaignOutcome]
    CAMPAIGN_OUTCOME_SENT: _ClassVar[CampaignOutcome]
    CAMPAIGN_OUTCOME_PARTIAL: _ClassVar[CampaignOutcome]
    CAMPAIGN_OUTCOME_ALL_FAILED: _ClassVar[CampaignOutcome]

class MessageStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STAGE_UNSPECIFIED: _ClassVar[MessageStage]
    MESSAGE_STAGE_NEW: _ClassVar[MessageStage]
    MESSAGE_STAGE_SENDING: _ClassVar[MessageStage]
    MESSAGE_STAGE_SUBMITTED: _ClassVar[MessageStage]
    MESSAGE_STAGE_NOT_SENT: _ClassVar[MessageStage]

class DeliveryResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_RESULT_UNSPECIFIED: _ClassVar[DeliveryResult]
    DELIVERY_RESULT_UNKNOWN: _ClassVar[DeliveryResult]
    DELIVERY_RESULT_DELIVERED: _ClassVar[DeliveryResult]
    DELIVERY_RESULT_FAILED: _ClassVar[DeliveryResult]

class ExportStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_STATUS_UNSPECIFIED: _ClassVar[ExportStatus]
    EXPORT_STATUS_QUEUED: _ClassVar[ExportStatus]
    EXPORT_STATUS_RUNNING: _ClassVar[ExportStatus]
    EXPORT_STATUS_DONE: _ClassVar[ExportStatus]
    EXPORT_STATUS_FAILED: _ClassVar[ExportStatus]
    EXPORT_STATUS_EXPIRED: _ClassVar[ExportStatus]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
    EXPORT_FORMAT_TXT: _ClassVar[ExportFormat]
CAMPAIGN_STATUS_UNSPECIFIED: CampaignStatus
CAMPAIGN_STATUS_DRAFT: CampaignStatus
CAMPAIGN_STATUS_NEW: CampaignStatus
CAMPAIGN_STATUS_PENDING: CampaignStatus
CAMPAIGN_STATUS_BUILDING: CampaignStatus
CAMPAIGN_STATUS_SENDING: CampaignStatus
CAMPAIGN_STATUS_PAUSED: CampaignStatus
CAMPAIGN_STATUS_DONE: CampaignStatus
CAMPAIGN_STATUS_CANCELLED: CampaignStatus
CAMPAIGN_STATUS_FAILED: CampaignStatus
CAMPAIGN_STATUS_EXPIRED: CampaignStatus
CAMPAIGN_MODE_UNSPECIFIED: CampaignMode
CAMPAIGN_MODE_ON_DEMAND: CampaignMode
CAMPAIGN_MODE_ON_TIME: CampaignMode
CAMPAIGN_MODE_SPREAD: CampaignMode
CAMPAIGN_MODE_TRIGGER: CampaignMode
MODERATION_STATE_UNSPECIFIED: ModerationState
MODERATION_STATE_PENDING: ModerationState
MODERATION_STATE_APPROVED: ModerationState
MODERATION_STATE_REJECTED: ModerationState
CAMPAIGN_OUTCOME_UNSPECIFIED: CampaignOutcome
CAMPAIGN_OUTCOME_SENT: CampaignOutcome
CAMPAIGN_OUTCOME_PARTIAL: CampaignOutcome
CAMPAIGN_OUTCOME_ALL_FAILED: CampaignOutcome
MESSAGE_STAGE_UNSPECIFIED: MessageStage
MESSAGE_STAGE_NEW: MessageStage
MESSAGE_STAGE_SENDING: MessageStage
MESSAGE_STAGE_SUBMITTED: MessageStage
MESSAGE_STAGE_NOT_SENT: MessageStage
DELIVERY_RESULT_UNSPECIFIED: DeliveryResult
DELIVERY_RESULT_UNKNOWN: DeliveryResult
DELIVERY_RESULT_DELIVERED: DeliveryResult
DELIVERY_RESULT_FAILED: DeliveryResult
EXPORT_STATUS_UNSPECIFIED: ExportStatus
EXPORT_STATUS_QUEUED: ExportStatus
EXPORT_STATUS_RUNNING: ExportStatus
EXPORT_STATUS_DONE: ExportStatus
EXPORT_STATUS_FAILED: ExportStatus
EXPORT_STATUS_EXPIRED: ExportStatus
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat
EXPORT_FORMAT_TXT: ExportFormat

class Content(_message.Message):
    __slots__ = ("text", "subject", "html", "template_name")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    text: str
    subject: str
    html: str
    template_name: str
    def __init__(self, text: _Optional[str] = ..., subject: _Optional[str] = ..., html: _Optional[str] = ..., template_name: _Optional[str] = ...) -> None: ...

class StateChange(_message.Message):
    __slots__ = ("status", "reason", "actor", "at")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    status: CampaignStatus
    reason: str
    actor: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, status: _Optional[_Union[CampaignStatus, str]] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("total", "processed", "sent", "delivered", "errors", "opted_out", "queued", "sending", "submitted", "assumed_delivered", "deferred", "cancelled")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    OPTED_OUT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    SENDING_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    ASSUMED_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    total: int
    processed: int
    sent: int
    delivered: int
    errors: int
    opted_out: int
    queued: int
    sending: int
    submitted: int
    assumed_delivered: int
    deferred: int
    cancelled: int
    def __init__(self, total: _Optional[int] = ..., processed: _Optional[int] = ..., sent: _Optional[int] = ..., delivered: _Optional[int] = ..., errors: _Optional[int] = ..., opted_out: _Optional[int] = ..., queued: _Optional[int] = ..., sending: _Optional[int] = ..., submitted: _Optional[int] = ..., assumed_delivered: _Optional[int] = ..., deferred: _Optional[int] = ..., cancelled: _Optional[int] = ...) -> None: ...

class SendingWindow(_message.Message):
    __slots__ = ("start", "end", "time_zone")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    start: str
    end: str
    time_zone: str
    def __init__(self, start: _Optional[str] = ..., end: _Optional[str] = ..., time_zone: _Optional[str] = ...) -> None: ...

class Variant(_message.Message):
    __slots__ = ("name", "content", "split_percent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    content: Content
    split_percent: int
    def __init__(self, name: _Optional[str] = ..., content: _Optional[_Union[Content, _Mapping]] = ..., split_percent: _Optional[int] = ...) -> None: ...

class DailyActivity(_message.Message):
    __slots__ = ("date", "sent", "delivered", "failed")
    DATE_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    date: str
    sent: int
    delivered: int
    failed: int
    def __init__(self, date: _Optional[str] = ..., sent: _Optional[int] = ..., delivered: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("id", "workspace_id", "name", "channel", "status", "mode", "sender", "author", "content", "category_ids", "start_at", "end_at", "auto_start", "moderation", "moderation_note", "progress", "outcome", "archived", "created_at", "started_at", "completed_at", "history", "status_reason", "recipients_count", "window", "max_rate", "auto_pause_failures", "daily", "updated_at", "description", "variants", "test_percent", "winner", "held", "category_names")
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_IDS_FIELD_NUMBER: _ClassVar[int]
    START_AT_FIELD_NUMBER: _ClassVar[int]
    END_AT_FIELD_NUMBER: _ClassVar[int]
    AUTO_START_FIELD_NUMBER: _ClassVar[int]
    MODERATION_FIELD_NUMBER: _ClassVar[int]
    MODERATION_NOTE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_COUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_RATE_FIELD_NUMBER: _ClassVar[int]
    AUTO_PAUSE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    DAILY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    TEST_PERCENT_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_NAMES_FIELD_NUMBER: _ClassVar[int]
    id: str
    workspace_id: str
    name: str
    channel: _common_pb2.Channel
    status: CampaignStatus
    mode: CampaignMode
    sender: str
    author: str
    content: Content
    category_ids: _containers.RepeatedScalarFieldContainer[str]
    start_at: _timestamp_pb2.Timestamp
    end_at: _timestamp_pb2.Timestamp
    auto_start: bool
    moderation: ModerationState
    moderation_note: str
    progress: Progress
    outcome: CampaignOutcome
    archived: bool
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    history: _containers.RepeatedCompositeFieldContainer[StateChange]
    status_reason: str
    recipients_count: int
    window: SendingWindow
    max_rate: float
    auto_pause_failures: int
    daily: _containers.RepeatedCompositeFieldContainer[DailyActivity]
    updated_at: _timestamp_pb2.Timestamp
    description: str
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    test_percent: int
    winner: str
    held: int
    category_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., name: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., status: _Optional[_Union[CampaignStatus, str]] = ..., mode: _Optional[_Union[CampaignMode, str]] = ..., sender: _Optional[str] = ..., author: _Optional[str] = ..., content: _Optional[_Union[Content, _Mapping]] = ..., category_ids: _Optional[_Iterable[str]] = ..., start_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., auto_start: _Optional[bool] = ..., moderation: _Optional[_Union[ModerationState, str]] = ..., moderation_note: _Optional[str] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., outcome: _Optional[_Union[CampaignOutcome, str]] = ..., archived: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., history: _Optional[_Iterable[_Union[StateChange, _Mapping]]] = ..., status_reason: _Optional[str] = ..., recipients_count: _Optional[int] = ..., window: _Optional[_Union[SendingWindow, _Mapping]] = ..., max_rate: _Optional[float] = ..., auto_pause_failures: _Optional[int] = ..., daily: _Optional[_Iterable[_Union[DailyActivity, _Mapping]]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., description: _Optional[str] = ..., variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., test_percent: _Optional[int] = ..., winner: _Optional[str] = ..., held: _Optional[int] = ..., category_names: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateCampaignRequest(_message.Message):
    __slots__ = ("request_id", "campaign", "recipients", "draft", "source_campaign_id", "source_filter")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FILTER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    campaign: Campaign
    recipients: _containers.RepeatedCompositeFieldContainer[_common_pb2.Recipient]
    draft: bool
    source_campaign_id: str
    source_filter: str
    def __init__(self, request_id: _Optional[str] = ..., campaign: _Optional[_Union[Campaign, _Mapping]] = ..., recipients: _Optional[_Iterable[_Union[_common_pb2.Recipient, _Mapping]]] = ..., draft: _Optional[bool] = ..., source_campaign_id: _Optional[str] = ..., source_filter: _Optional[str] = ...) -> None: ...

class GetCampaignRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CampaignActionRequest(_message.Message):
    __slots__ = ("id", "request_id", "note")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    note: str
    def __init__(self, id: _Optional[str] = ..., request_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter", "order_by", "show_archived", "archived_only", "moderation_queue", "show_all")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    SHOW_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_ONLY_FIELD_NUMBER: _ClassVar[int]
    MODERATION_QUEUE_FIELD_NUMBER: _ClassVar[int]
    SHOW_ALL_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    order_by: str
    show_archived: bool
    archived_only: bool
    moderation_queue: bool
    show_all: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., order_by: _Optional[str] = ..., show_archived: _Optional[bool] = ..., archived_only: _Optional[bool] = ..., moderation_queue: _Optional[bool] = ..., show_all: _Optional[bool] = ...) -> None: ...

class ListCampaignsResponse(_message.Message):
    __slots__ = ("campaigns", "next_page_token", "total_size")
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[Campaign]
    next_page_token: str
    total_size: int
    def __init__(self, campaigns: _Optional[_Iterable[_Union[Campaign, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("id", "campaign_id", "contact_id", "contact_name", "phone", "email", "channel", "status", "carrier_result", "error_code", "error_description", "failure_category", "created_at", "sent_at", "delivered_at", "views", "clicks", "replies", "variant", "content_preview", "provider_message_id", "attempt", "fields", "route", "held", "stage", "result", "address")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_NAME_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CARRIER_RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FAILURE_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    campaign_id: str
    contact_id: str
    contact_name: str
    phone: str
    email: str
    channel: _common_pb2.Channel
    status: _common_pb2.MessageStatus
    carrier_result: str
    error_code: str
    error_description: str
    failure_category: _common_pb2.FailureCategory
    created_at: _timestamp_pb2.Timestamp
    sent_at: _timestamp_pb2.Timestamp
    delivered_at: _timestamp_pb2.Timestamp
    views: int
    clicks: int
    replies: int
    variant: str
    content_preview: str
    provider_message_id: str
    attempt: int
    fields: _containers.ScalarMap[str, str]
    route: str
    held: bool
    stage: MessageStage
    result: DeliveryResult
    address: str
    def __init__(self, id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., contact_id: _Optional[str] = ..., contact_name: _Optional[str] = ..., phone: _Optional[str] = ..., email: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., status: _Optional[_Union[_common_pb2.MessageStatus, str]] = ..., carrier_result: _Optional[str] = ..., error_code: _Optional[str] = ..., error_description: _Optional[str] = ..., failure_category: _Optional[_Union[_common_pb2.FailureCategory, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., views: _Optional[int] = ..., clicks: _Optional[int] = ..., replies: _Optional[int] = ..., variant: _Optional[str] = ..., content_preview: _Optional[str] = ..., provider_message_id: _Optional[str] = ..., attempt: _Optional[int] = ..., fields: _Optional[_Mapping[str, str]] = ..., route: _Optional[str] = ..., held: _Optional[bool] = ..., stage: _Optional[_Union[MessageStage, str]] = ..., result: _Optional[_Union[DeliveryResult, str]] = ..., address: _Optional[str] = ...) -> None: ...

class PreviewContentRequest(_message.Message):
    __slots__ = ("campaign_id", "variant", "content", "channel", "contact_id", "sample")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    variant: str
    content: Content
    channel: _common_pb2.Channel
    contact_id: str
    sample: _common_pb2.Recipient
    def __init__(self, campaign_id: _Optional[str] = ..., variant: _Optional[str] = ..., content: _Optional[_Union[Content, _Mapping]] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., contact_id: _Optional[str] = ..., sample: _Optional[_Union[_common_pb2.Recipient, _Mapping]] = ...) -> None: ...

class PreviewContentResponse(_message.Message):
    __slots__ = ("text", "subject", "html", "sms_encoding", "sms_parts", "characters", "variables")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    SMS_ENCODING_FIELD_NUMBER: _ClassVar[int]
    SMS_PARTS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    text: str
    subject: str
    html: str
    sms_encoding: str
    sms_parts: int
    characters: int
    variables: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, text: _Optional[str] = ..., subject: _Optional[str] = ..., html: _Optional[str] = ..., sms_encoding: _Optional[str] = ..., sms_parts: _Optional[int] = ..., characters: _Optional[int] = ..., variables: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateCampaignRequest(_message.Message):
    __slots__ = ("request_id", "campaign", "update_mask")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    campaign: Campaign
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, request_id: _Optional[str] = ..., campaign: _Optional[_Union[Campaign, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class PromoteVariantRequest(_message.Message):
    __slots__ = ("request_id", "campaign_id", "variant")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    campaign_id: str
    variant: str
    def __init__(self, request_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., variant: _Optional[str] = ...) -> None: ...

class DeleteCampaignResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TriggerCampaignRequest(_message.Message):
    __slots__ = ("request_id", "campaign_id", "recipient")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    campaign_id: str
    recipient: _common_pb2.Recipient
    def __init__(self, request_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., recipient: _Optional[_Union[_common_pb2.Recipient, _Mapping]] = ...) -> None: ...

class GetCampaignKpisRequest(_message.Message):
    __slots__ = ("period",)
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    period: str
    def __init__(self, period: _Optional[str] = ...) -> None: ...

class CampaignKpis(_message.Message):
    __slots__ = ("total_campaigns", "active", "completed", "errors", "messages_delivered", "awaiting_moderation")
    TOTAL_CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    AWAITING_MODERATION_FIELD_NUMBER: _ClassVar[int]
    total_campaigns: int
    active: int
    completed: int
    errors: int
    messages_delivered: int
    awaiting_moderation: int
    def __init__(self, total_campaigns: _Optional[int] = ..., active: _Optional[int] = ..., completed: _Optional[int] = ..., errors: _Optional[int] = ..., messages_delivered: _Optional[int] = ..., awaiting_moderation: _Optional[int] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("id", "campaign_id", "action", "actor", "note", "before", "after", "at")
    class BeforeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AfterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    campaign_id: str
    action: str
    actor: str
    note: str
    before: _containers.ScalarMap[str, str]
    after: _containers.ScalarMap[str, str]
    at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., campaign_id: _Optional[str] = ..., action: _Optional[str] = ..., actor: _Optional[str] = ..., note: _Optional[str] = ..., before: _Optional[_Mapping[str, str]] = ..., after: _Optional[_Mapping[str, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("campaign_id", "page_size", "page_token")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    page_size: int
    page_token: str
    def __init__(self, campaign_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RetryMessagesRequest(_message.Message):
    __slots__ = ("request_id", "campaign_id", "message_ids", "filter")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    campaign_id: str
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    filter: str
    def __init__(self, request_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., message_ids: _Optional[_Iterable[str]] = ..., filter: _Optional[str] = ...) -> None: ...

class RetryMessagesResponse(_message.Message):
    __slots__ = ("retried", "skipped", "campaign", "excluded")
    RETRIED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    retried: int
    skipped: int
    campaign: Campaign
    excluded: _containers.RepeatedCompositeFieldContainer[RetryExclusion]
    def __init__(self, retried: _Optional[int] = ..., skipped: _Optional[int] = ..., campaign: _Optional[_Union[Campaign, _Mapping]] = ..., excluded: _Optional[_Iterable[_Union[RetryExclusion, _Mapping]]] = ...) -> None: ...

class RetryExclusion(_message.Message):
    __slots__ = ("message_id", "category", "reason")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    category: _common_pb2.FailureCategory
    reason: str
    def __init__(self, message_id: _Optional[str] = ..., category: _Optional[_Union[_common_pb2.FailureCategory, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ListMessagesRequest(_message.Message):
    __slots__ = ("campaign_id", "page_size", "page_token", "filter", "order_by")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    page_size: int
    page_token: str
    filter: str
    order_by: str
    def __init__(self, campaign_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token", "total_size")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    next_page_token: str
    total_size: int
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class Export(_message.Message):
    __slots__ = ("id", "campaign_id", "format", "filter", "status", "rows", "size_bytes", "error", "author", "created_at", "finished_at", "expires_at", "file_name", "attempts", "status_detail")
    ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: str
    campaign_id: str
    format: ExportFormat
    filter: str
    status: ExportStatus
    rows: int
    size_bytes: int
    error: str
    author: str
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    file_name: str
    attempts: int
    status_detail: str
    def __init__(self, id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., filter: _Optional[str] = ..., status: _Optional[_Union[ExportStatus, str]] = ..., rows: _Optional[int] = ..., size_bytes: _Optional[int] = ..., error: _Optional[str] = ..., author: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., file_name: _Optional[str] = ..., attempts: _Optional[int] = ..., status_detail: _Optional[str] = ...) -> None: ...

class CreateExportRequest(_message.Message):
    __slots__ = ("request_id", "campaign_id", "format", "filter")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    campaign_id: str
    format: ExportFormat
    filter: str
    def __init__(self, request_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., filter: _Optional[str] = ...) -> None: ...

class GetExportRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListExportsRequest(_message.Message):
    __slots__ = ("campaign_id", "page_size", "page_token")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    page_size: int
    page_token: str
    def __init__(self, campaign_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListExportsResponse(_message.Message):
    __slots__ = ("exports", "next_page_token")
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    exports: _containers.RepeatedCompositeFieldContainer[Export]
    next_page_token: str
    def __init__(self, exports: _Optional[_Iterable[_Union[Export, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("id", "campaign_id", "stage", "message", "at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    campaign_id: str
    stage: str
    message: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., campaign_id: _Optional[str] = ..., stage: _Optional[str] = ..., message: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListJobErrorsRequest(_message.Message):
    __slots__ = ("campaign_id", "page_size", "page_token")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    page_size: int
    page_token: str
    def __init__(self, campaign_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobErrorsResponse(_message.Message):
    __slots__ = ("errors", "next_page_token", "total_size")
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    errors: _containers.RepeatedCompositeFieldContainer[JobError]
    next_page_token: str
    total_size: int
    def __init__(self, errors: _Optional[_Iterable[_Union[JobError, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("message_id", "contact_id", "contact_name", "text", "at")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    contact_id: str
    contact_name: str
    text: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, message_id: _Optional[str] = ..., contact_id: _Optional[str] = ..., contact_name: _Optional[str] = ..., text: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., **kwargs) -> None: ...

class ListRepliesRequest(_message.Message):
    __slots__ = ("campaign_id", "page_size", "page_token")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    page_size: int
    page_token: str
    def __init__(self, campaign_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRepliesResponse(_message.Message):
    __slots__ = ("replies", "next_page_token", "total_size")
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[Reply]
    next_page_token: str
    total_size: int
    def __init__(self, replies: _Optional[_Iterable[_Union[Reply, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class Click(_message.Message):
    __slots__ = ("message_id", "contact_id", "contact_name", "address", "link_index", "url", "at")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LINK_INDEX_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    contact_id: str
    contact_name: str
    address: str
    link_index: int
    url: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, message_id: _Optional[str] = ..., contact_id: _Optional[str] = ..., contact_name: _Optional[str] = ..., address: _Optional[str] = ..., link_index: _Optional[int] = ..., url: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListClicksRequest(_message.Message):
    __slots__ = ("campaign_id", "page_size", "page_token")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    page_size: int
    page_token: str
    def __init__(self, campaign_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListClicksResponse(_message.Message):
    __slots__ = ("clicks", "next_page_token", "total_size", "unique_contacts")
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_CONTACTS_FIELD_NUMBER: _ClassVar[int]
    clicks: _containers.RepeatedCompositeFieldContainer[Click]
    next_page_token: str
    total_size: int
    unique_contacts: int
    def __init__(self, clicks: _Optional[_Iterable[_Union[Click, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ..., unique_contacts: _Optional[int] = ...) -> None: ...

class ReconcileCampaignRequest(_message.Message):
    __slots__ = ("campaign_id", "repair", "max_differences", "request_id")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    MAX_DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    repair: bool
    max_differences: int
    request_id: str
    def __init__(self, campaign_id: _Optional[str] = ..., repair: _Optional[bool] = ..., max_differences: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class MessageDifference(_message.Message):
    __slots__ = ("message_id", "ledger_status", "stats_status")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_STATUS_FIELD_NUMBER: _ClassVar[int]
    STATS_STATUS_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    ledger_status: _common_pb2.MessageStatus
    stats_status: _common_pb2.MessageStatus
    def __init__(self, message_id: _Optional[str] = ..., ledger_status: _Optional[_Union[_common_pb2.MessageStatus, str]] = ..., stats_status: _Optional[_Union[_common_pb2.MessageStatus, str]] = ...) -> None: ...

class ReconcileReport(_message.Message):
    __slots__ = ("campaign_id", "ledger", "stats", "compared", "differing", "differences", "final", "repaired")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    DIFFERING_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    ledger: Progress
    stats: Progress
    compared: int
    differing: int
    differences: _containers.RepeatedCompositeFieldContainer[MessageDifference]
    final: bool
    repaired: bool
    def __init__(self, campaign_id: _Optional[str] = ..., ledger: _Optional[_Union[Progress, _Mapping]] = ..., stats: _Optional[_Union[Progress, _Mapping]] = ..., compared: _Optional[int] = ..., differing: _Optional[int] = ..., differences: _Optional[_Iterable[_Union[MessageDifference, _Mapping]]] = ..., final: _Optional[bool] = ..., repaired: _Optional[bool] = ...) -> None: ...
