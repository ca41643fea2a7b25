"""Protobuf wire helpers for the test scripts, which use no generated stubs.

Every message they exchange is one string in field 1 (the wire form of
`lookaside.test.v1.WhoReply`).
"""


def read_varint(data, index):
    """Decodes the protobuf varint at data[index:]; returns (value, next index)."""
    value = 0
    shift = 0
    while True:
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index
        shift += 7


def varint(value):
    """The protobuf varint of a non-negative integer."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def text_of(message):
    """Field 1 (string) of a message; "" when it has none."""
    index = 0
    while index < len(message):
        key, index = read_varint(message, index)
        field, wire_type = key >> 3, key & 7
        if wire_type == 2:
            length, index = read_varint(message, index)
            value = message[index : index + length]
            index += length
            if field == 1:
                return value.decode("utf-8")
        elif wire_type == 0:
            _, index = read_varint(message, index)
        elif wire_type == 1:
            index += 8
        elif wire_type == 5:
            index += 4
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return ""


def message(text):
    """A message whose field 1 is `text`."""
    data = text.encode("utf-8")
    if not data:
        return b""
    return b"\x0a" + varint(len(data)) + data
