"""Just enough of shoal's wire format to speak it from a test by hand.

A frame is a 4-byte little-endian length and a MessagePack body; structs
are maps by field name, enums maps from the variant's name.
"""

import hashlib
import hmac
import os
import socket
import struct

import shoal

#: The wire protocol version of this build (``shoal_proto::auth::PROTOCOL``).
PROTOCOL = 4


def pack(obj) -> bytes:
    """MessagePack for None, bools, ints, floats, str, bytes, lists, dicts."""
    if obj is None:
        return b"\xc0"
    if obj is True or obj is False:
        return b"\xc3" if obj else b"\xc2"
    if isinstance(obj, int):
        if 0 <= obj < 128:
            return bytes([obj])
        return b"\xcf" + struct.pack(">Q", obj)
    if isinstance(obj, float):
        return b"\xcb" + struct.pack(">d", obj)
    if isinstance(obj, str):
        data = obj.encode()
        return (
            bytes([0xA0 | len(data)]) if len(data) < 32 else b"\xda" + struct.pack(">H", len(data))
        ) + data
    if isinstance(obj, bytes):
        return b"\xc4" + bytes([len(obj)]) + obj  # bin8: under 256 bytes
    if isinstance(obj, list):
        return b"\xdc" + struct.pack(">H", len(obj)) + b"".join(pack(x) for x in obj)
    if isinstance(obj, dict):
        body = b"".join(pack(k) + pack(v) for k, v in obj.items())
        return b"\xde" + struct.pack(">H", len(obj)) + body
    raise TypeError(obj)


def frame(obj) -> bytes:
    body = pack(obj)
    return struct.pack("<I", len(body)) + body


def greeting(nonce: bytes = bytes(32), protocol: int = PROTOCOL) -> dict:
    """A caller's first frame: its protocol, version and nonce."""
    return {"protocol": protocol, "version": shoal.__version__, "nonce": nonce}


def proof(token: str | None, caller: bytes, callee: bytes, side: str = "caller") -> dict:
    """A side's proof of ``token`` over both nonces (none without a token)."""
    if token is None:
        return {"proof": None}
    message = f"shoal/4 {side} proof".encode() + caller + callee
    return {"proof": hmac.new(token.encode(), message, hashlib.sha256).digest()}


def callee_nonce(challenge: bytes) -> bytes:
    """The nonce in a callee's ``Challenge`` frame."""
    mark = b"\xa5nonce\xc4\x20"
    i = challenge.index(mark) + len(mark)
    return challenge[i : i + 32]


def handshake(address: str, token: str | None, *requests: bytes, timeout: float = 10.0) -> bytes:
    """Greet the server at ``address``, prove ``token`` (None: offer no
    proof) and send ``requests`` with the proof, as a real caller does;
    return everything answered after the challenge until the connection
    closes.
    """
    caller = os.urandom(32)
    host, port = address.split("://")[-1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(frame(greeting(caller)))
        challenge = _read_frame(s)
        return _send_and_read(s, frame(proof(token, caller, callee_nonce(challenge))), *requests)


def exchange(address: str, first: bytes, *rest: bytes, timeout: float = 10.0) -> bytes:
    """Send ``first``, wait for one answer frame, then send ``rest`` (as a
    real peer does: nothing more before it is admitted); return everything
    answered until the connection closes.
    """
    host, port = address.split("://")[-1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(first)
        out = _read_exactly(s, 4)
        if len(out) == 4:
            (n,) = struct.unpack("<I", out)
            out += _read_exactly(s, n)
        if not rest:
            return out
        return out + _send_and_read(s, *rest)


def _send_and_read(s: socket.socket, *data: bytes) -> bytes:
    """Send ``data``, end this side, and return all answered until the
    server closes (a refusal closes, and what came before is the answer)."""
    out = b""
    try:
        s.sendall(b"".join(data))
        s.shutdown(socket.SHUT_WR)
        while chunk := s.recv(65536):
            out += chunk
    except OSError:
        pass
    return out


def _read_frame(s: socket.socket) -> bytes:
    head = _read_exactly(s, 4)
    if len(head) < 4:
        raise ConnectionError("closed before answering")
    (n,) = struct.unpack("<I", head)
    return head + _read_exactly(s, n)


def _read_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n and (chunk := s.recv(n - len(out))):
        out += chunk
    return out
