using System.Buffers.Binary;
using System.Net.Sockets;
using Tidemark.Nbd.Protocol;
using Tidemark.Storage;

namespace Tidemark.Nbd.Server;

// NBD_CMD_READ: simple replies, or structured replies with OFFSET_DATA / OFFSET_HOLE chunks.
internal sealed partial class TransmissionPhase
{
    private async Task ReadAsync(NbdRequest request, CancellationToken cancellationToken)
    {
        var offset = (long)request.Offset;
        var length = (int)request.Length;
        if (_replies.CanSendFile && _image is IHostFileImage host && host.TryGetHostFile(offset, length, out var file))
        {
            await SendFromFileAsync(request, file, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (!_replies.Structured)
        {
            // Header and data in one pooled frame: the image reads straight behind the header,
            // and the frame goes out in one write.
            var simple = PayloadPool.Shared.Rent(NbdWire.SimpleReplyLength + length);
            try
            {
                await _image.ReadAsync(offset, simple.AsMemory(NbdWire.SimpleReplyLength, length), cancellationToken).ConfigureAwait(false);
                ReplyWriter.EncodeSimpleReply(simple, NbdErrno.None, request.Cookie);
                await _replies.WriteFrameAsync(simple.AsMemory(0, NbdWire.SimpleReplyLength + length), cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                PayloadPool.Shared.Return(simple);
            }

            return;
        }

        // With DF the reply is one OFFSET_DATA chunk; otherwise ranges that read as zeroes are
        // sent as OFFSET_HOLE chunks (12 bytes instead of their length), as qemu-nbd does.
        var runs = (request.Flags & NbdCommandFlags.DontFragment) != 0 || _negotiated.Export.ReadsWhole
            ? [new ReadRun(offset, length, Zero: false)]
            : await ReadRunsAsync(offset, length, cancellationToken).ConfigureAwait(false);

        var frameLength = 0;
        foreach (var run in runs)
        {
            frameLength += NbdWire.ChunkHeaderLength + (run.Zero ? NbdWire.OffsetHoleLength : NbdWire.OffsetDataPrefixLength + run.Length);
        }

        var frame = PayloadPool.Shared.Rent(frameLength);
        try
        {
            var position = 0;
            for (var i = 0; i < runs.Count; i++)
            {
                var run = runs[i];
                var flags = i == runs.Count - 1 ? NbdReplyFlags.Done : NbdReplyFlags.None;
                var chunk = frame.AsSpan(position);
                if (run.Zero)
                {
                    ReplyWriter.EncodeChunkHeader(chunk, flags, NbdReplyChunkType.OffsetHole, request.Cookie, NbdWire.OffsetHoleLength);
                    BinaryPrimitives.WriteUInt64BigEndian(chunk[NbdWire.ChunkHeaderLength..], (ulong)run.Offset);
                    BinaryPrimitives.WriteUInt32BigEndian(chunk[(NbdWire.ChunkHeaderLength + 8)..], (uint)run.Length);
                    position += NbdWire.ChunkHeaderLength + NbdWire.OffsetHoleLength;
                }
                else
                {
                    ReplyWriter.EncodeChunkHeader(chunk, flags, NbdReplyChunkType.OffsetData, request.Cookie, (uint)(NbdWire.OffsetDataPrefixLength + run.Length));
                    BinaryPrimitives.WriteUInt64BigEndian(chunk[NbdWire.ChunkHeaderLength..], (ulong)run.Offset);
                    position += NbdWire.ChunkHeaderLength + NbdWire.OffsetDataPrefixLength;
                    await _image.ReadAsync(run.Offset, frame.AsMemory(position, run.Length), cancellationToken).ConfigureAwait(false);
                    position += run.Length;
                }
            }

            await _replies.WriteFrameAsync(frame.AsMemory(0, frameLength), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            PayloadPool.Shared.Return(frame);
        }
    }

    /// <summary>
    /// The same replies as above with the data left in the host file: only the headers are built
    /// here, and the kernel copies each data run from the page cache into the socket.
    /// </summary>
    private async Task SendFromFileAsync(NbdRequest request, FileStream file, CancellationToken cancellationToken)
    {
        var offset = (long)request.Offset;
        var length = (int)request.Length;
        if (!_replies.Structured)
        {
            var header = new byte[NbdWire.SimpleReplyLength];
            ReplyWriter.EncodeSimpleReply(header, NbdErrno.None, request.Cookie);
            SendPacketsElement[] simple = [new(header), new(file, offset, length)];
            await _replies.WritePacketsAsync(simple, NbdWire.SimpleReplyLength + (long)length, cancellationToken).ConfigureAwait(false);
            return;
        }

        var runs = (request.Flags & NbdCommandFlags.DontFragment) != 0 || _negotiated.Export.ReadsWhole
            ? [new ReadRun(offset, length, Zero: false)]
            : await ReadRunsAsync(offset, length, cancellationToken).ConfigureAwait(false);

        const int DataHeaderLength = NbdWire.ChunkHeaderLength + NbdWire.OffsetDataPrefixLength;
        const int HoleChunkLength = NbdWire.ChunkHeaderLength + NbdWire.OffsetHoleLength;
        var headersLength = 0;
        var dataRuns = 0;
        foreach (var run in runs)
        {
            headersLength += run.Zero ? HoleChunkLength : DataHeaderLength;
            dataRuns += run.Zero ? 0 : 1;
        }

        var headers = new byte[headersLength];
        var elements = new SendPacketsElement[runs.Count + dataRuns];
        var position = 0;
        var element = 0;
        long frameLength = headersLength;
        for (var i = 0; i < runs.Count; i++)
        {
            var run = runs[i];
            var flags = i == runs.Count - 1 ? NbdReplyFlags.Done : NbdReplyFlags.None;
            var chunk = headers.AsSpan(position);
            if (run.Zero)
            {
                ReplyWriter.EncodeChunkHeader(chunk, flags, NbdReplyChunkType.OffsetHole, request.Cookie, NbdWire.OffsetHoleLength);
                BinaryPrimitives.WriteUInt64BigEndian(chunk[NbdWire.ChunkHeaderLength..], (ulong)run.Offset);
                BinaryPrimitives.WriteUInt32BigEndian(chunk[(NbdWire.ChunkHeaderLength + 8)..], (uint)run.Length);
                elements[element++] = new SendPacketsElement(headers, position, HoleChunkLength);
                position += HoleChunkLength;
            }
            else
            {
                ReplyWriter.EncodeChunkHeader(chunk, flags, NbdReplyChunkType.OffsetData, request.Cookie, (uint)(NbdWire.OffsetDataPrefixLength + run.Length));
                BinaryPrimitives.WriteUInt64BigEndian(chunk[NbdWire.ChunkHeaderLength..], (ulong)run.Offset);
                elements[element++] = new SendPacketsElement(headers, position, DataHeaderLength);
                elements[element++] = new SendPacketsElement(file, run.Offset, run.Length);
                position += DataHeaderLength;
                frameLength += run.Length;
            }
        }

        await _replies.WritePacketsAsync(elements, frameLength, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Splits a read into runs that read as zeroes and runs of data, adjacent runs merged.</summary>
    private async ValueTask<List<ReadRun>> ReadRunsAsync(long offset, int length, CancellationToken cancellationToken)
    {
        var runs = new List<ReadRun>(2);
        var end = offset + length;
        var position = offset;
        while (position < end)
        {
            var extents = await _image.GetExtentsAsync(position, end - position, cancellationToken).ConfigureAwait(false);
            if (extents.Count == 0)
            {
                // The image could not say: read it all as data (always correct).
                AddRun(runs, position, (int)(end - position), zero: false);
                break;
            }

            foreach (var extent in extents)
            {
                var runEnd = Math.Min(extent.End, end);
                if (runEnd <= position)
                {
                    continue;
                }

                AddRun(runs, position, (int)(runEnd - position), (extent.Kind & ExtentKind.Zero) != 0);
                position = runEnd;
            }
        }

        return runs;
    }

    private static void AddRun(List<ReadRun> runs, long offset, int length, bool zero)
    {
        if (runs.Count > 0 && runs[^1].Zero == zero)
        {
            runs[^1] = runs[^1] with { Length = runs[^1].Length + length };
        }
        else
        {
            runs.Add(new ReadRun(offset, length, zero));
        }
    }

    private readonly record struct ReadRun(long Offset, int Length, bool Zero);
}
