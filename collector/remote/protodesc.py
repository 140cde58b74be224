"""Building protobuf message classes from a descriptor written in code (no ``protoc`` here).

`collector.remote.prompb` (remote write 1.0) and `collector.remote.prompb2` (2.0) declare their
schemas field by field with `add_field`; the classes they get are the reference the hand
encoders are proven against and the decoders the receiver uses, never the hot path.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

__all__ = ["add_field"]

_F = descriptor_pb2.FieldDescriptorProto


def add_field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str = "",
    oneof: int | None = None,
) -> None:
    """Add one field to ``message``; ``type_name`` fully qualified (``.pkg.Message``)."""
    field = message.field.add()
    field.name = name
    field.number = number
    field.type = kind  # type: ignore[assignment]  # the stubs want the enum wrapper type
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name
    if oneof is not None:
        field.oneof_index = oneof
