from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side

class Trade(_message.Message):
    __slots__ = ("exchange", "symbol", "trade_id", "price", "quantity", "side", "exchange_time_us", "ingest_time_us")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    INGEST_TIME_US_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    trade_id: str
    price: str
    quantity: str
    side: Side
    exchange_time_us: int
    ingest_time_us: int
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., trade_id: _Optional[str] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., exchange_time_us: _Optional[int] = ..., ingest_time_us: _Optional[int] = ...) -> None: ...
