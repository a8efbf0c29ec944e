using System.Buffers.Binary;
using System.Text;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Nbd.Client;

// The reply loop: reads simple replies and structured chunks, matches them to pending requests
// by cookie, and checks every chunk against its request (formats.md §4.5).
public sealed partial class NbdClient
{
    // Longest non-data chunk accepted: a BLOCK_STATUS chunk of 2^20 extents (proto.md's cap) is 8 MiB.
    private const int MaxMetadataChunkLength = 4 + (8 << 20);

    private void StartReplyLoop() => _replyLoop = Task.Run(ReplyLoopAsync);

    private async Task ReplyLoopAsync()
    {
        var magicBytes = new byte[4];
        var rest = new byte[NbdWire.ChunkHeaderLength - 4];
        try
        {
            while (true)
            {
                if (!await _reader.TryReadExactAsync(magicBytes, CancellationToken.None).ConfigureAwait(false))
                {
                    Die(new NbdException(NbdErrorReason.ConnectionClosed, "the server closed the connection"));
                    return;
                }

                var magic = BinaryPrimitives.ReadUInt32BigEndian(magicBytes);
                if (magic == NbdMagic.SimpleReply)
                {
                    await _reader.ReadExactAsync(rest.AsMemory(0, NbdWire.SimpleReplyLength - 4), CancellationToken.None).ConfigureAwait(false);
                    await SimpleReplyAsync(BinaryPrimitives.ReadUInt32BigEndian(rest), BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4))).ConfigureAwait(false);
                }
                else if (magic == NbdMagic.StructuredReply && Structured)
                {
                    await _reader.ReadExactAsync(rest, CancellationToken.None).ConfigureAwait(false);
                    var flags = (NbdReplyFlags)BinaryPrimitives.ReadUInt16BigEndian(rest);
                    var type = (NbdReplyChunkType)BinaryPrimitives.ReadUInt16BigEndian(rest.AsSpan(2));
                    var cookie = BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4));
                    var length = BinaryPrimitives.ReadUInt32BigEndian(rest.AsSpan(12));
                    await ChunkAsync(flags, type, cookie, length).ConfigureAwait(false);
                }
                else
                {
                    throw new NbdException(NbdErrorReason.ProtocolViolation, $"reply magic 0x{magic:x8} is not a {(Structured ? "simple or structured" : "simple")} reply");
                }
            }
        }
        catch (Exception e) when (e is NbdException or IOException or ObjectDisposedException)
        {
            Die(e is NbdException ? e : new NbdException(NbdErrorReason.ConnectionClosed, $"the connection broke: {e.Message}", e));
        }
    }

    private async Task SimpleReplyAsync(uint error, ulong cookie)
    {
        var pending = Take(cookie);
        if (error != 0)
        {
            pending.Completion.TrySetException(RequestFailed(pending, (NbdErrno)error, message: null));
            return;
        }

        if (pending.Command == NbdCommand.Read)
        {
            // A simple READ reply carries the whole length, straight into the caller's buffer.
            await _reader.ReadExactAsync(pending.Buffer, CancellationToken.None).ConfigureAwait(false);
        }
        else if (pending.Command == NbdCommand.BlockStatus)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"a successful BLOCK_STATUS (cookie {cookie}) got a simple reply");
        }

        pending.Completion.TrySetResult();
    }

    private async Task ChunkAsync(NbdReplyFlags flags, NbdReplyChunkType type, ulong cookie, uint length)
    {
        if (!_pending.TryGetValue(cookie, out var pending))
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"reply chunk for unknown cookie {cookie}");
        }

        switch (type)
        {
            case NbdReplyChunkType.None:
                if (length != 0 || (flags & NbdReplyFlags.Done) == 0)
                {
                    throw new NbdException(NbdErrorReason.ProtocolViolation, "NONE chunk with a payload or without DONE");
                }

                break;
            case NbdReplyChunkType.OffsetData:
                await OffsetDataAsync(pending, length).ConfigureAwait(false);
                break;
            case NbdReplyChunkType.OffsetHole:
                await OffsetHoleAsync(pending, length).ConfigureAwait(false);
                break;
            case NbdReplyChunkType.BlockStatus:
                await BlockStatusChunkAsync(pending, length).ConfigureAwait(false);
                break;
            case NbdReplyChunkType.Error:
            case NbdReplyChunkType.ErrorOffset:
                await ErrorChunkAsync(pending, type, length).ConfigureAwait(false);
                break;
            default:
                if (((ushort)type & 0x8000) == 0)
                {
                    // proto.md: an unknown non-error chunk type means the client cannot follow.
                    throw new NbdException(NbdErrorReason.ProtocolViolation, $"unknown reply chunk type {(ushort)type}");
                }

                await _reader.SkipAsync(length, CancellationToken.None).ConfigureAwait(false);
                pending.Error ??= RequestFailed(pending, NbdErrno.EINVAL, $"unknown error chunk type 0x{(ushort)type:x}");
                break;
        }

        if ((flags & NbdReplyFlags.Done) != 0)
        {
            Take(cookie);
            if (pending.Error is not null)
            {
                pending.Completion.TrySetException(pending.Error);
            }
            else if (pending.Command == NbdCommand.Read && pending.Covered != pending.Length)
            {
                pending.Completion.TrySetException(new NbdException(NbdErrorReason.ProtocolViolation, $"the server's reply to READ {pending.Offset}+{pending.Length} covered {pending.Covered} bytes"));
            }
            else
            {
                pending.Completion.TrySetResult();
            }
        }
    }

    private async Task OffsetDataAsync(PendingRequest pending, uint length)
    {
        if (pending.Command != NbdCommand.Read || length <= NbdWire.OffsetDataPrefixLength)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"OFFSET_DATA chunk of {length} bytes in reply to {pending.Command}");
        }

        var offsetBytes = new byte[8];
        await _reader.ReadExactAsync(offsetBytes, CancellationToken.None).ConfigureAwait(false);
        var offset = (long)BinaryPrimitives.ReadUInt64BigEndian(offsetBytes);
        var dataLength = length - NbdWire.OffsetDataPrefixLength;
        var start = CheckInside(pending, offset, dataLength, "OFFSET_DATA");
        await _reader.ReadExactAsync(pending.Buffer.Slice(start, (int)dataLength), CancellationToken.None).ConfigureAwait(false);
        pending.Covered += dataLength;
    }

    private async Task OffsetHoleAsync(PendingRequest pending, uint length)
    {
        if (pending.Command != NbdCommand.Read || length != NbdWire.OffsetHoleLength)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"OFFSET_HOLE chunk of {length} bytes in reply to {pending.Command}");
        }

        var body = new byte[NbdWire.OffsetHoleLength];
        await _reader.ReadExactAsync(body, CancellationToken.None).ConfigureAwait(false);
        var offset = (long)BinaryPrimitives.ReadUInt64BigEndian(body);
        var holeLength = BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(8));
        var start = CheckInside(pending, offset, holeLength, "OFFSET_HOLE");
        pending.Buffer.Span.Slice(start, (int)holeLength).Clear();
        pending.Covered += holeLength;
    }

    private static int CheckInside(PendingRequest pending, long offset, uint length, string chunk)
    {
        if (length == 0 || offset < pending.Offset || offset + length > pending.Offset + pending.Length)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"{chunk} chunk {offset}+{length} lies outside READ {pending.Offset}+{pending.Length}");
        }

        return (int)(offset - pending.Offset);
    }

    private async Task BlockStatusChunkAsync(PendingRequest pending, uint length)
    {
        if (pending.Command != NbdCommand.BlockStatus || length < NbdWire.BlockStatusPrefixLength + NbdWire.BlockDescriptorLength
            || (length - NbdWire.BlockStatusPrefixLength) % NbdWire.BlockDescriptorLength != 0 || length > MaxMetadataChunkLength)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"BLOCK_STATUS chunk of {length} bytes in reply to {pending.Command}");
        }

        var body = new byte[length];
        await _reader.ReadExactAsync(body, CancellationToken.None).ConfigureAwait(false);
        var id = BinaryPrimitives.ReadUInt32BigEndian(body);
        if (!MetaContexts.Values.Contains(id))
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"BLOCK_STATUS chunk for context id {id}, which was not selected");
        }

        var count = (int)((length - NbdWire.BlockStatusPrefixLength) / NbdWire.BlockDescriptorLength);
        var extents = new NbdBlockExtent[count];
        for (var i = 0; i < count; i++)
        {
            var at = NbdWire.BlockStatusPrefixLength + (i * NbdWire.BlockDescriptorLength);
            extents[i] = new NbdBlockExtent(BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(at)), BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(at + 4)));
            if (extents[i].Length == 0)
            {
                throw new NbdException(NbdErrorReason.ProtocolViolation, $"BLOCK_STATUS extent {i} for context id {id} has length 0");
            }
        }

        pending.Extents ??= [];
        pending.Extents[id] = extents;
    }

    private async Task ErrorChunkAsync(PendingRequest pending, NbdReplyChunkType type, uint length)
    {
        var minimum = NbdWire.ErrorPrefixLength + (type == NbdReplyChunkType.ErrorOffset ? 8 : 0);
        if (length < minimum || length > MaxMetadataChunkLength)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"{type} chunk of {length} bytes is malformed");
        }

        var body = new byte[length];
        await _reader.ReadExactAsync(body, CancellationToken.None).ConfigureAwait(false);
        var error = (NbdErrno)BinaryPrimitives.ReadUInt32BigEndian(body);
        var messageLength = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(4));
        if (messageLength > length - minimum)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, $"{type} chunk message of {messageLength} bytes runs past the chunk");
        }

        var message = Encoding.UTF8.GetString(body, NbdWire.ErrorPrefixLength, messageLength);
        pending.Error ??= RequestFailed(pending, error == 0 ? NbdErrno.EINVAL : error, message);
    }

    private PendingRequest Take(ulong cookie)
        => _pending.TryRemove(cookie, out var pending)
            ? pending
            : throw new NbdException(NbdErrorReason.ProtocolViolation, $"reply for unknown cookie {cookie}");

    private static NbdException RequestFailed(PendingRequest pending, NbdErrno errno, string? message)
    {
        var name = Enum.IsDefined(errno) ? errno.ToString() : $"error {(uint)errno}";
        var text = $"{pending.Command} {pending.Offset}+{pending.Length} failed: {name}" + (string.IsNullOrEmpty(message) ? string.Empty : $" ({message})");
        return new NbdException(NbdErrorReason.RequestFailed, errno, text);
    }

    /// <summary>The connection is lost: the client becomes Dead and every pending request fails with the cause.</summary>
    private void Die(Exception cause)
    {
        if (State is NbdClientState.Ready or NbdClientState.Negotiating)
        {
            _deathCause = cause;
            State = NbdClientState.Dead;
        }

        Fail(cause);
    }

    private void Fail(Exception cause)
    {
        foreach (var cookie in _pending.Keys)
        {
            if (_pending.TryRemove(cookie, out var pending))
            {
                pending.Completion.TrySetException(cause);
            }
        }
    }
}
