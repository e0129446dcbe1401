#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus (fuzz/corpus/<target>/): valid request and
reply frames for every op, headers, and handshake transcripts, built here
from the protocol as Op.swift and Handshake.swift document it (an encoder
independent of the Swift one). WireTests/SeedCorpusTests checks that every
seed named valid-* still decodes, so a protocol change that leaves them
stale fails `swift test`. Re-run after changing the protocol:

    python3 fuzz/make-seeds.py

Seeds found by fuzzing that once crashed live in the same directories as
regress-*; this script never touches them.
"""
import hashlib
import hmac
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
MAGIC = 0x3130524548544554  # "TETHER01" little-endian
ROOT = -1

# name, number, request scalars: Op.swift.
OPS = [
    ("hello", 1, 3), ("challenge", 2, 4), ("authenticate", 3, 0), ("welcome", 4, 0), ("refused", 5, 1),
    ("openat", 16, 4), ("close", 17, 1), ("read", 18, 2), ("write", 19, 1), ("pread", 20, 3),
    ("pwrite", 21, 2), ("lseek", 22, 3), ("fstat", 23, 1), ("statx", 24, 3), ("faccessat", 25, 3),
    ("getdents64", 26, 2), ("mkdirat", 27, 2), ("unlinkat", 28, 2), ("renameat2", 29, 3),
    ("readlinkat", 30, 2), ("ftruncate", 31, 2), ("truncate", 32, 2), ("fsync", 33, 2), ("chdir", 34, 1),
    ("getcwd", 35, 1), ("cancel", 36, 1), ("echo", 37, 1), ("fchmodat", 38, 3), ("fchownat", 39, 4),
    ("utimensat", 40, 3), ("linkat", 41, 3), ("symlinkat", 42, 1), ("mknodat", 43, 3), ("statfs", 44, 1),
    ("fallocate", 45, 4), ("fcntl", 46, 3), ("lock", 47, 2), ("flock", 48, 2), ("getxattr", 49, 3),
    ("setxattr", 50, 4), ("listxattr", 51, 3), ("removexattr", 52, 2), ("copyFileRange", 53, 6),
    ("credentials", 54, 4), ("posixLock", 55, 3), ("lockOwnerClose", 56, 2), ("lockOwnerExit", 57, 1),
    ("statxWatched", 58, 4), ("invalidate", 59, 0),
    ("socket", 60, 3), ("connect", 61, 1), ("shutdown", 62, 2), ("getsockopt", 63, 4), ("setsockopt", 64, 3),
    ("sockname", 65, 3), ("bind", 66, 1), ("listen", 67, 2), ("accept", 68, 2), ("poll", 69, 2),
    ("sendto", 70, 3), ("recvfrom", 71, 3), ("bindPath", 72, 2), ("connectPath", 73, 2), ("sendfile", 74, 4),
    ("sendtoPath", 75, 4),
    ("ioctl", 80, 3), ("terminal", 81, 0), ("windowSize", 82, 3),
    ("terminalOffer", 83, 0), ("terminalAccept", 84, 1), ("streamWrite", 85, 1),
]
NUMBER = {name: number for name, number, _ in OPS}
SCALARS = {name: count for name, _, count in OPS}

KEY = bytes(range(32))
WRONG_KEY = bytes(255 - i for i in range(32))
SERVER_NONCE = b"\x5a" * 32
CLIENT_NONCE = b"\xc3" * 32
assert struct.calcsize("<hh4xqqi4x") == 32
FLOCK = struct.pack("<hh4xqqi4x", 1, 0, 0, 100, 0)  # x86_64 struct flock: F_WRLCK, SEEK_SET, 0, 100
TIMES = struct.pack("<qqqq", 1, 2, 3, 4)  # two struct timespec


def header(length, op, flags=0, id=0):
    return struct.pack("<IHHQ", length, op, flags, id)


def request(name, scalars, payload=b"", id=1):
    count = SCALARS[name]
    assert len(scalars) == count, (name, scalars)
    body = b"".join(struct.pack("<q", s) for s in scalars) + payload
    return header(16 + len(body), NUMBER[name], 0, id) + body


def response(name, result, payload=b"", id=1):
    return header(24 + len(payload), NUMBER[name], 1, id) + struct.pack("<q", result) + payload


# One plausible request per file op: scalars and payload as Op.swift documents them.
REQUESTS = {
    "openat": ([ROOT, 0o2000000, 0o644, 0], b"a/b\0"),
    "close": ([3], b""),
    "read": ([3, 4096], b""),
    "write": ([3], b"hello, home\n"),
    "pread": ([3, 4096, 8192], b""),
    "pwrite": ([3, 100], b"data"),
    "lseek": ([3, 0, 2], b""),
    "fstat": ([3], b""),
    "statx": ([ROOT, 0x100, 0xFFF], b"dir/file\0"),
    "faccessat": ([ROOT, 4, 0], b"file\0"),
    "getdents64": ([3, 32768], b""),
    "mkdirat": ([ROOT, 0o755], b"newdir\0"),
    "unlinkat": ([ROOT, 0x200], b"olddir\0"),
    "renameat2": ([ROOT, ROOT, 0], b"old\0new\0"),
    "readlinkat": ([ROOT, 4096], b"link\0"),
    "ftruncate": ([3, 0], b""),
    "truncate": ([ROOT, 10], b"file\0"),
    "fsync": ([3, 1], b""),
    "chdir": ([ROOT], b"/home/me\0"),
    "getcwd": ([4], b""),
    "cancel": ([7], b""),
    "echo": ([64], b"x" * 64),
    "fchmodat": ([ROOT, 0o600, 0], b"file\0"),
    "fchownat": ([ROOT, 1000, 1000, 0x1000], b"\0"),
    "utimensat": ([ROOT, 0, 1], TIMES + b"file\0"),
    "linkat": ([ROOT, ROOT, 0], b"from\0to\0"),
    "symlinkat": ([ROOT], b"target\0link\0"),
    "mknodat": ([ROOT, 0o010644, 0], b"fifo\0"),
    "statfs": ([3], b"\0"),
    "fallocate": ([3, 0, 0, 4096], b""),
    "fcntl": ([3, 4, 0o4000], b""),
    "lock": ([3, 37], FLOCK),
    "flock": ([3, 2], b""),
    "getxattr": ([ROOT, 0, 256], b"user.tag\0file\0"),
    "setxattr": ([ROOT, 0, 0, 3], b"user.tag\0file\0abc"),
    "listxattr": ([ROOT, 1, 256], b"file\0"),
    "removexattr": ([ROOT, 0], b"user.tag\0file\0"),
    "copyFileRange": ([3, -1, 4, 0, 65536, 0], b""),
    "credentials": ([1, 1000, 1000, 2], struct.pack("<II", 1000, 27)),
    "posixLock": ([3, 7, 4242], FLOCK),
    "lockOwnerClose": ([4242, 3], b""),
    "lockOwnerExit": ([4242], b""),
    "statxWatched": ([ROOT, 0x100, 0xFFF, 0], b"/dir/file\0"),
    "invalidate": ([], b""),
    "socket": ([2, 1, 0], b""),
    "connect": ([3], struct.pack("<HH4s8x", 2, 0x5000, bytes([127, 0, 0, 1]))),
    "shutdown": ([3, 1], b""),
    "getsockopt": ([3, 1, 4, 4], b""),
    "setsockopt": ([3, 6, 1], struct.pack("<i", 1)),
    "sockname": ([3, 1, 128], b""),
    "bind": ([3], struct.pack("<HH4s8x", 2, 0x5000, bytes([0, 0, 0, 0]))),
    "listen": ([3, 128], b""),
    "accept": ([3, 0], b""),
    "poll": ([3, 1], b""),
    "sendto": ([3, 0, 16], struct.pack("<HH4s8x", 2, 0x3500, bytes([127, 0, 0, 1])) + b"query"),
    "recvfrom": ([3, 0, 512], b""),
    "bindPath": ([3, ROOT], b"/srv/app.sock\0"),
    "connectPath": ([3, 5], b"app.sock\0"),
    "sendfile": ([3, 5, -1, 65536], b""),
    "sendtoPath": ([3, 0, ROOT, 14], b"/srv/app.sock\0<13>hello"),
    "ioctl": ([3, 0x5414, 0], struct.pack("<HHHH", 24, 80, 0, 0)),
    "terminal": ([], b""),
    "windowSize": ([3, 24, 80], b""),
    "terminalOffer": ([], b""),
    "terminalAccept": ([3], b""),
    "streamWrite": ([3], b"pumped bytes"),
}

# One plausible reply per file op.
DIRENT = struct.pack("<QqHB", 1, 1, 24, 8) + b"a\0" + b"\0" * 3
REPLIES = {
    "openat": (5, b""), "read": (5, b"hello"), "pread": (4, b"abcd"), "write": (12, b""),
    "fstat": (0, b"\0" * 256), "statx": (0, bytes(range(256))), "getdents64": (len(DIRENT), DIRENT),
    "readlinkat": (6, b"target"), "chdir": (6, b"/home/me"), "getcwd": (8, b"/home/me"),
    "echo": (0, b"y" * 64), "statfs": (0, b"\1" * 120), "lock": (0, FLOCK), "posixLock": (0, FLOCK),
    "getxattr": (3, b"abc"), "listxattr": (9, b"user.tag\0"), "lseek": (4096, b""),
    "statxWatched": (1, bytes(range(256))), "invalidate": (0, b"/d/f\0/d\0"),
    "socket": (3, b""), "getsockopt": (4, struct.pack("<i", 111)),
    "sockname": (16, struct.pack("<HH4s8x", 2, 0x5000, bytes([127, 0, 0, 1]))),
    "accept": (4, struct.pack("<HH4s8x", 2, 0x9c40, bytes([127, 0, 0, 1]))), "poll": (1, b""),
    "sendto": (5, b""), "sendfile": (65536, b""), "recvfrom": (5, b"reply" + struct.pack("<HH4s8x", 2, 0x3500, bytes([127, 0, 0, 1]))),
    "sendtoPath": (9, b""),
    "ioctl": (0, struct.pack("<HHHH", 24, 80, 0, 0)), "terminal": (3, b""),
    "windowSize": (0, struct.pack("<HHHH", 25, 80, 0, 0)),
    "terminalOffer": (3, bytes(range(32)) + b"/tmp/tether-terminal-Ab3dE9"), "terminalAccept": (4, b""), "streamWrite": (12, b""),
}


def hs(name, scalars=(), payload=b""):
    """A handshake frame: request form, id 0."""
    return request(name, list(scalars), payload, id=0)


def mac(key, label, a, b):
    return hmac.new(key, label + a + b, hashlib.sha256).digest()


def chunks(*frames):
    return b"".join(struct.pack("<H", len(f)) + f for f in frames)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for target in ("fuzz-frame-header", "fuzz-request", "fuzz-response", "fuzz-handshake", "fuzz-sealed"):
        d = os.path.join(CORPUS, target)
        if os.path.isdir(d):
            for f in os.listdir(d):
                if not f.startswith("regress-"):
                    os.remove(os.path.join(d, f))

    hello = hs("hello", [MAGIC, 1, 0], CLIENT_NONCE)
    challenge_auth = hs("challenge", [MAGIC, 1, 0, 1], SERVER_NONCE)
    challenge_open = hs("challenge", [MAGIC, 1, 0, 0], SERVER_NONCE)
    authenticate = hs("authenticate", [], mac(KEY, b"tether-v1 client", SERVER_NONCE, CLIENT_NONCE))
    welcome = hs("welcome", [], mac(KEY, b"tether-v1 server", CLIENT_NONCE, SERVER_NONCE))
    handshake_frames = {
        "hello": hello, "challenge": challenge_auth, "authenticate": authenticate, "welcome": welcome,
        "refused": hs("refused", [1]),
    }

    for name, (scalars, payload) in REQUESTS.items():
        frame = request(name, scalars, payload, id=0x10001)
        write("fuzz-request", f"valid-{name}", b"\0" + frame)
        write("fuzz-frame-header", f"valid-request-{name}", frame)
    for name, frame in handshake_frames.items():
        write("fuzz-request", f"valid-{name}", b"\0" + frame)
        write("fuzz-frame-header", f"valid-request-{name}", frame)
    for name, (result, payload) in REPLIES.items():
        frame = response(name, result, payload, id=0x10001)
        write("fuzz-response", f"valid-{name}", b"\0" + frame)
        write("fuzz-frame-header", f"valid-response-{name}", frame)
    for name in ("close", "mkdirat", "unlinkat", "fsync", "credentials", "cancel"):
        write("fuzz-response", f"valid-{name}", b"\0" + response(name, 0))
    write("fuzz-response", "valid-errno", b"\0" + response("openat", -2))

    # Headers the decoder must refuse, one per documented error.
    write("fuzz-frame-header", "bad-truncated", header(40, 20)[:15])
    write("fuzz-frame-header", "bad-undersized", header(15, 20))
    write("fuzz-frame-header", "bad-oversized", header(16 + 48 + (1 << 20) + 4096 + 1, 20))
    write("fuzz-frame-header", "bad-unknown-op", header(16, 6))
    write("fuzz-frame-header", "bad-unknown-flags", header(40, 20, 4))
    write("fuzz-frame-header", "bad-below-op-minimum", header(39, 20))

    # Encoder seeds (mode bit 3): op index, id, six scalars, buffer size, length mode, payload.
    enc = bytes([8, 5]) + struct.pack("<Q", 9) + struct.pack("<6q", -1, 0, 0o644, 0, 0, 0)
    write("fuzz-request", "encoder-openat", enc + struct.pack("<H", 80) + b"\0" + b"a/b\0")
    write("fuzz-request", "encoder-too-small", enc + struct.pack("<H", 20) + b"\0" + b"a/b\0")
    write("fuzz-response", "encoder-read", bytes([8, 7]) + struct.pack("<Qq", 9, 5)
          + struct.pack("<H", 64) + b"\0" + b"hello")

    # Handshakes. Mode: bits 0-1 server / client / pair; bit 2 server key; bit 3 client key;
    # bit 4 client key wrong; bit 5 fix lengths.
    write("fuzz-handshake", "server-key-complete", bytes([0 | 4]) + chunks(hello, authenticate))
    write("fuzz-handshake", "server-key-wrong-proof", bytes([0 | 4]) + chunks(
        hello, hs("authenticate", [], mac(WRONG_KEY, b"tether-v1 client", SERVER_NONCE, CLIENT_NONCE))))
    write("fuzz-handshake", "server-nokey-complete", bytes([0]) + chunks(hello, hello))
    write("fuzz-handshake", "server-bad-magic", bytes([4]) + chunks(hs("hello", [MAGIC ^ 1, 1, 0], CLIENT_NONCE)))
    write("fuzz-handshake", "server-bad-version", bytes([4]) + chunks(hs("hello", [MAGIC, 2, 0], CLIENT_NONCE)))
    write("fuzz-handshake", "client-key-complete", bytes([1 | 8]) + chunks(challenge_auth, welcome, welcome))
    write("fuzz-handshake", "client-nokey-complete", bytes([1]) + chunks(challenge_open, hs("welcome")))
    write("fuzz-handshake", "client-key-downgrade", bytes([1 | 8]) + chunks(challenge_open, hs("welcome")))
    write("fuzz-handshake", "client-refused", bytes([1 | 8]) + chunks(challenge_auth, hs("refused", [1])))
    for mode, name in ((2, "pair-nokeys"), (2 | 4 | 8, "pair-keys"), (2 | 4 | 8 | 16, "pair-wrong-key"),
                       (2 | 4, "pair-server-key-only"), (2 | 8, "pair-client-key-only")):
        write("fuzz-handshake", name, bytes([mode]))
    # The man in the middle flips a byte of the client's proof, then injects a frame.
    write("fuzz-handshake", "pair-keys-tampered", bytes([2 | 4 | 8, 0, 0, 1, 1, 20, 0, 0xFF, 0])
          + bytes([1]) + chunks(welcome) + bytes([0]))

    # ReplyContract (fuzz-response mode bit 4): op index, six scalars, request payload
    # size, result, payload size; a read of 4096 answered with 5 bytes.
    read_index = [name for name, _, _ in OPS].index("read")
    write("fuzz-response", "contract-read", bytes([16, read_index]) + struct.pack("<6Q", 3, 4096 + 0x100, 0, 0, 0, 0)
          + struct.pack("<QQQ", 0, 10, 5))

    # Sealed frames. Mode bits 0-1: random / stream / keys; bit 2: fix prefix or headers;
    # bit 3: open in place. A stream: frame count - 1, chunks, then delivery instructions
    # (0 next, 1 next with flips, 2 replay, 3 cut or lengthen, 4 inject, 5 reflect).
    frames = [request(name, *REQUESTS[name], id=i + 1) for i, name in enumerate(("openat", "pread", "write"))]
    stream = bytes([len(frames) - 1]) + chunks(*frames)
    write("fuzz-sealed", "stream-in-order", bytes([1]) + stream + bytes([0, 0, 0]))
    write("fuzz-sealed", "stream-in-place", bytes([1 | 8]) + stream + bytes([0, 0, 0]))
    write("fuzz-sealed", "stream-flip", bytes([1]) + stream + bytes([0, 1, 0, 30, 0, 0x01, 0, 0]))
    write("fuzz-sealed", "stream-replay", bytes([1]) + stream + bytes([0, 2, 0, 0, 0]))
    write("fuzz-sealed", "stream-reorder", bytes([1]) + stream + bytes([2, 1, 0, 0, 0]))
    write("fuzz-sealed", "stream-cut", bytes([1]) + stream + bytes([3, 2, 0, 0]))
    write("fuzz-sealed", "stream-reflect", bytes([1]) + stream + bytes([5, 0, 0, 0]))
    write("fuzz-sealed", "stream-inject", bytes([1]) + stream + bytes([4]) + chunks(struct.pack("<I", 56) + frames[0]) + bytes([0]))
    write("fuzz-sealed", "stream-bad-header", bytes([1]) + bytes([1]) + chunks(header(99, 20) + b"\0" * 24, frames[1])
          + bytes([0, 0]))
    write("fuzz-sealed", "random", bytes([0]) + struct.pack("<I", 56) + bytes(range(56)))
    write("fuzz-sealed", "random-fixed-prefix", bytes([4]) + struct.pack("<I", 0) + bytes(range(60)))
    write("fuzz-sealed", "keys", bytes([2, 0]) + KEY + CLIENT_NONCE + SERVER_NONCE + frames[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
