"""Runs one plan of NBD requests against one export through libnbd and prints what came back.

Usage: python3 nbd_requests.py URI < plan.json

The plan is a JSON list of steps, each a list whose first item names the request. Every step
prints one line, "<step>: <outcome>", where the outcome is what a client can observe: success
(with a digest of the data read, the chunks it came in, or the extents), or the errno the
server replied with. The same plan run against two servers must print the same lines.

libnbd's own checks (strict mode) are turned off, so that requests a careful client would
never send (zero length, past the end, over the maximum, unknown flags) reach the server.
"""

import errno
import hashlib
import os
import json
import sys

import nbd

FLAGS = {
    "fua": nbd.CMD_FLAG_FUA,
    "no_hole": nbd.CMD_FLAG_NO_HOLE,
    "df": nbd.CMD_FLAG_DF,
    "req_one": nbd.CMD_FLAG_REQ_ONE,
    "fast_zero": nbd.CMD_FLAG_FAST_ZERO,
}


def flags_of(names):
    value = 0
    for name in names or []:
        value |= FLAGS[name]
    return value


def failure(e):
    name = errno.errorcode.get(e.errnum, str(e.errnum)) if e.errnum else "no errno"
    return "error " + name


def digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


def pattern(byte, length):
    return bytes([byte]) * length


def handshake(h):
    sizes = [h.get_block_size(k) for k in (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM)]
    flags = {
        "read_only": h.is_read_only(),
        "flush": h.can_flush(),
        "fua": h.can_fua(),
        "rotational": h.is_rotational(),
        "trim": h.can_trim(),
        "zero": h.can_zero(),
        "fast_zero": h.can_fast_zero(),
        "df": h.can_df(),
        "multi_conn": h.can_multi_conn(),
        "cache": h.can_cache(),
        "base:allocation": h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION),
        "structured": h.get_structured_replies_negotiated(),
    }
    return f"size {h.get_size()} block sizes {sizes} " + " ".join(f"{k}={int(v)}" for k, v in flags.items())


def read(h, offset, length, flags):
    chunks = []

    def chunk(subbuf, off, status, err):
        kind = {nbd.READ_DATA: "data", nbd.READ_HOLE: "hole"}.get(status, f"status {status}")
        chunks.append((off, len(subbuf), kind))
        return 0

    data = h.pread_structured(length, offset, chunk, flags)
    return f"ok {digest(data)} chunks {coalesce(sorted(chunks))}"


def coalesce(chunks):
    """Joins adjacent chunks of one kind: proto.md lets a server split a read into chunks as it
    likes, and qemu-nbd splits holes where its block status extents end (a zero cluster next
    to an unallocated one), which a client cannot tell from one larger hole."""
    joined = []
    for off, length, kind in chunks:
        if joined and joined[-1][2] == kind and joined[-1][0] + joined[-1][1] == off:
            joined[-1] = (joined[-1][0], joined[-1][1] + length, kind)
        else:
            joined.append((off, length, kind))
    return joined


def block_status(h, offset, length, flags):
    extents = []

    def extent(context, off, entries, err):
        pairs = list(zip(entries[0::2], entries[1::2]))
        extents.append((context, off, pairs))
        return 0

    h.block_status(length, offset, extent, flags)
    return "ok " + " ".join(f"{c}@{o} {p}" for c, o, p in sorted(extents))


def wait_all(h, cookies):
    outcomes = []
    for cookie in cookies:
        while True:
            try:
                if h.aio_command_completed(cookie):
                    outcomes.append("ok")
                    break
            except nbd.Error as e:
                outcomes.append(failure(e))
                break
            h.poll(-1)
    return outcomes


def in_flight_writes(h, writes):
    """Sends every write before waiting for any reply; returns each reply's outcome."""
    buffers = []
    cookies = []
    for offset, length, byte, *names in writes:
        buffer = nbd.Buffer.from_bytearray(bytearray(pattern(byte, length)))
        buffers.append(buffer)
        cookies.append(h.aio_pwrite(buffer, offset, flags=flags_of(names)))
    outcomes = wait_all(h, cookies)
    return "replies " + ",".join(sorted(set(outcomes))) + f" ({len(outcomes)})"


def in_flight_reads(h, reads):
    buffers = []
    cookies = []
    for offset, length in reads:
        buffer = nbd.Buffer(length)
        buffers.append(buffer)
        cookies.append(h.aio_pread(buffer, offset))
    outcomes = wait_all(h, cookies)
    whole = hashlib.sha256()
    for b in buffers:
        whole.update(b.to_bytearray())
    return "replies " + ",".join(sorted(set(outcomes))) + f" ({len(outcomes)}) {whole.hexdigest()[:16]}"


def run(h, step):
    name, *args = step
    if name == "handshake":
        return handshake(h)
    if name == "read":
        offset, length, *names = args
        return read(h, offset, length, flags_of(names))
    if name == "write":
        offset, length, byte, *names = args
        h.pwrite(pattern(byte, length), offset, flags_of(names))
        return "ok"
    if name == "zero":
        offset, length, *names = args
        h.zero(length, offset, flags_of(names))
        return "ok"
    if name == "trim":
        offset, length, *names = args
        h.trim(length, offset, flags_of(names))
        return "ok"
    if name == "cache":
        offset, length = args
        h.cache(length, offset)
        return "ok"
    if name == "flush":
        h.flush()
        return "ok"
    if name == "status":
        offset, length, *names = args
        return block_status(h, offset, length, flags_of(names))
    if name == "writes_in_flight":
        return in_flight_writes(h, args[0])
    if name == "reads_in_flight":
        return in_flight_reads(h, args[0])
    if name == "disconnect_in_flight":
        # Every write is queued, then NBD_CMD_DISC after them without waiting for a reply:
        # proto.md "Terminating the transmission phase" has the server finish them first.
        buffers = []
        for offset, length, byte in args[0]:
            buffer = nbd.Buffer.from_bytearray(bytearray(pattern(byte, length)))
            buffers.append(buffer)
            h.aio_pwrite(buffer, offset)
        h.shutdown()
        return "sent"
    if name == "abandon_in_flight":
        # Every write is queued, then the connection is dropped without NBD_CMD_DISC or waiting:
        # a guest that died. Which writes land is unknowable, so plans write bytes already there.
        buffers = []
        for offset, length, byte in args[0]:
            buffer = nbd.Buffer.from_bytearray(bytearray(pattern(byte, length)))
            buffers.append(buffer)
            h.aio_pwrite(buffer, offset)
        # Whatever libnbd sent goes out; the process then ends with the socket open, and the
        # kernel closes it.
        h.poll(0)
        return "dropped"
    raise ValueError(f"unknown step {name}")


def main():
    uri = sys.argv[1]
    plan = json.load(sys.stdin)
    h = nbd.NBD()
    h.set_strict_mode(0)
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    for index, step in enumerate(plan):
        label = f"{index} {json.dumps(step)}"
        try:
            outcome = run(h, step)
        except nbd.Error as e:
            outcome = failure(e)
        print(f"{label}: {outcome}", flush=True)
        if step[0] == "disconnect_in_flight":
            return
        if step[0] == "abandon_in_flight":
            os._exit(0)
    if h.aio_is_ready():
        h.shutdown()


if __name__ == "__main__":
    main()
