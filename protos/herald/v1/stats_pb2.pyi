from herald.v1 import campaigns_pb2 as _campaigns_pb2
from herald.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RebuildCampaignStatsRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class CampaignStats(_message.Message):
    __slots__ = ("campaign_id", "total", "sent", "delivered", "failed", "viewed", "clicked", "views", "clicks", "machine_opens", "replies", "opted_out", "assumed_delivered", "deferred", "sending", "queued", "submitted", "cancelled", "processed", "delivery_rate", "reply_rate", "click_rate", "open_rate", "variants", "campaign_status", "final")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    VIEWED_FIELD_NUMBER: _ClassVar[int]
    CLICKED_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    MACHINE_OPENS_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    OPTED_OUT_FIELD_NUMBER: _ClassVar[int]
    ASSUMED_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    SENDING_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_RATE_FIELD_NUMBER: _ClassVar[int]
    REPLY_RATE_FIELD_NUMBER: _ClassVar[int]
    CLICK_RATE_FIELD_NUMBER: _ClassVar[int]
    OPEN_RATE_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_STATUS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    total: int
    sent: int
    delivered: int
    failed: int
    viewed: int
    clicked: int
    views: int
    clicks: int
    machine_opens: int
    replies: int
    opted_out: int
    assumed_delivered: int
    deferred: int
    sending: int
    queued: int
    submitted: int
    cancelled: int
    processed: int
    delivery_rate: float
    reply_rate: float
    click_rate: float
    open_rate: float
    variants: _containers.RepeatedCompositeFieldContainer[VariantStats]
    campaign_status: _campaigns_pb2.CampaignStatus
    final: bool
    def __init__(self, campaign_id: _Optional[str] = ..., total: _Optional[int] = ..., sent: _Optional[int] = ..., delivered: _Optional[int] = ..., failed: _Optional[int] = ..., viewed: _Optional[int] = ..., clicked: _Optional[int] = ..., views: _Optional[int] = ..., clicks: _Optional[int] = ..., machine_opens: _Optional[int] = ..., replies: _Optional[int] = ..., opted_out: _Optional[int] = ..., assumed_delivered: _Optional[int] = ..., deferred: _Optional[int] = ..., sending: _Optional[int] = ..., queued: _Optional[int] = ..., submitted: _Optional[int] = ..., cancelled: _Optional[int] = ..., processed: _Optional[int] = ..., delivery_rate: _Optional[float] = ..., reply_rate: _Optional[float] = ..., click_rate: _Optional[float] = ..., open_rate: _Optional[float] = ..., variants: _Optional[_Iterable[_Union[VariantStats, _Mapping]]] = ..., campaign_status: _Optional[_Union[_campaigns_pb2.CampaignStatus, str]] = ..., final: _Optional[bool] = ...) -> None: ...

class VariantStats(_message.Message):
    __slots__ = ("variant", "total", "sent", "delivered", "failed", "replies", "viewed", "clicked", "delivery_rate", "reply_rate", "click_rate", "open_rate")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    VIEWED_FIELD_NUMBER: _ClassVar[int]
    CLICKED_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_RATE_FIELD_NUMBER: _ClassVar[int]
    REPLY_RATE_FIELD_NUMBER: _ClassVar[int]
    CLICK_RATE_FIELD_NUMBER: _ClassVar[int]
    OPEN_RATE_FIELD_NUMBER: _ClassVar[int]
    variant: str
    total: int
    sent: int
    delivered: int
    failed: int
    replies: int
    viewed: int
    clicked: int
    delivery_rate: float
    reply_rate: float
    click_rate: float
    open_rate: float
    def __init__(self, variant: _Optional[str] = ..., total: _Optional[int] = ..., sent: _Optional[int] = ..., delivered: _Optional[int] = ..., failed: _Optional[int] = ..., replies: _Optional[int] = ..., viewed: _Optional[int] = ..., clicked: _Optional[int] = ..., delivery_rate: _Optional[float] = ..., reply_rate: _Optional[float] = ..., click_rate: _Optional[float] = ..., open_rate: _Optional[float] = ...) -> None: ...

class GetCampaignStatsRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class WatchCampaignStatsRequest(_message.Message):
    __slots__ = ("campaign_id", "interval_ms")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    interval_ms: int
    def __init__(self, campaign_id: _Optional[str] = ..., interval_ms: _Optional[int] = ...) -> None: ...

class GetWorkspaceStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkspaceStats(_message.Message):
    __slots__ = ("workspace_id", "messages_total", "messages_sent", "messages_delivered", "messages_failed")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_SENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FAILED_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    messages_total: int
    messages_sent: int
    messages_delivered: int
    messages_failed: int
    def __init__(self, workspace_id: _Optional[str] = ..., messages_total: _Optional[int] = ..., messages_sent: _Optional[int] = ..., messages_delivered: _Optional[int] = ..., messages_failed: _Optional[int] = ...) -> None: ...

class BatchGetMessageStatesRequest(_message.Message):
    __slots__ = ("message_ids",)
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, message_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class MessageState(_message.Message):
    __slots__ = ("message_id", "status", "views", "clicks", "replies")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    status: _common_pb2.MessageStatus
    views: int
    clicks: int
    replies: int
    def __init__(self, message_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.MessageStatus, str]] = ..., views: _Optional[int] = ..., clicks: _Optional[int] = ..., replies: _Optional[int] = ...) -> None: ...

class BatchGetMessageStatesResponse(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[MessageState]
    def __init__(self, states: _Optional[_Iterable[_Union[MessageState, _Mapping]]] = ...) -> None: ...
