using System.Buffers.Binary;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Nbd.Server;

// NBD_CMD_BLOCK_STATUS: one BLOCK_STATUS chunk per selected meta context (formats.md §4.10).
internal sealed partial class TransmissionPhase
{
    private async Task BlockStatusAsync(NbdRequest request, CancellationToken cancellationToken)
    {
        var offset = (long)request.Offset;
        var length = (long)request.Length;
        var max = (request.Flags & NbdCommandFlags.ReqOne) != 0 ? 1 : Limits.MaxExtentsPerReply;
        var contexts = _negotiated.Contexts;
        var perContext = new List<Descriptor>[contexts.Count];
        var frameLength = 0;
        for (var i = 0; i < contexts.Count; i++)
        {
            var descriptors = await DescribeAsync(contexts[i], offset, length, max, cancellationToken).ConfigureAwait(false);
            perContext[i] = descriptors;
            frameLength += NbdWire.ChunkHeaderLength + NbdWire.BlockStatusPrefixLength + (descriptors.Count * NbdWire.BlockDescriptorLength);
        }

        var frame = PayloadPool.Shared.Rent(frameLength);
        try
        {
            var position = 0;
            for (var i = 0; i < contexts.Count; i++)
            {
                var descriptors = perContext[i];
                var payload = NbdWire.BlockStatusPrefixLength + (descriptors.Count * NbdWire.BlockDescriptorLength);
                var chunk = frame.AsSpan(position, NbdWire.ChunkHeaderLength + payload);
                var flags = i == contexts.Count - 1 ? NbdReplyFlags.Done : NbdReplyFlags.None;
                ReplyWriter.EncodeChunkHeader(chunk, flags, NbdReplyChunkType.BlockStatus, request.Cookie, (uint)payload);
                BinaryPrimitives.WriteUInt32BigEndian(chunk[NbdWire.ChunkHeaderLength..], contexts[i].Id);
                var at = NbdWire.ChunkHeaderLength + NbdWire.BlockStatusPrefixLength;
                foreach (var d in descriptors)
                {
                    BinaryPrimitives.WriteUInt32BigEndian(chunk[at..], d.Length);
                    BinaryPrimitives.WriteUInt32BigEndian(chunk[(at + 4)..], d.Flags);
                    at += NbdWire.BlockDescriptorLength;
                }

                position += chunk.Length;
            }

            await _replies.WriteFrameAsync(frame.AsMemory(0, frameLength), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            PayloadPool.Shared.Return(frame);
        }
    }

    /// <summary>
    /// Describes <paramref name="offset"/>..+<paramref name="length"/> for one context as at most
    /// <paramref name="max"/> descriptors with adjacent equal flags merged. The descriptors start
    /// at the offset, never run past the request, and cover at least one byte.
    /// </summary>
    private async ValueTask<List<Descriptor>> DescribeAsync(MetaContext context, long offset, long length, int max, CancellationToken cancellationToken)
    {
        var result = new List<Descriptor>();
        var end = offset + length;
        var position = offset;
        while (position < end)
        {
            var before = position;
            if (context.Kind == MetaContextKind.DirtyBitmap)
            {
                var extents = await context.Bitmap!.GetDirtyExtentsAsync(position, end - position, cancellationToken).ConfigureAwait(false);
                foreach (var e in extents)
                {
                    if (!Add(result, ref position, e.Offset, e.End, end, e.Dirty ? 1u : 0u, max))
                    {
                        return result;
                    }
                }
            }
            else
            {
                var extents = await _image.GetExtentsAsync(position, end - position, cancellationToken).ConfigureAwait(false);
                foreach (var e in extents)
                {
                    var flags = context.Kind == MetaContextKind.AllocationDepth ? (uint)e.Depth : (uint)e.Kind;
                    if (!Add(result, ref position, e.Offset, e.End, end, flags, max))
                    {
                        return result;
                    }
                }
            }

            if (position == before)
            {
                // The source described nothing: say "no special status" for the rest (always safe).
                Add(result, ref position, position, end, end, 0, max);
            }
        }

        return result;
    }

    /// <summary>Appends the part of one extent at and after <paramref name="position"/>; false once <paramref name="max"/> is reached.</summary>
    private static bool Add(List<Descriptor> result, ref long position, long extentStart, long extentEnd, long end, uint flags, int max)
    {
        var stop = Math.Min(extentEnd, end);
        if (extentStart > position || stop <= position)
        {
            // A source that skipped bytes or went backwards: ignore the extent, the loop asks again.
            return true;
        }

        var length = (uint)(stop - position);
        position = stop;
        if (result.Count > 0 && result[^1].Flags == flags)
        {
            result[^1] = result[^1] with { Length = result[^1].Length + length };
            return true;
        }

        if (result.Count == max)
        {
            position -= length;
            return false;
        }

        result.Add(new Descriptor(length, flags));
        return true;
    }

    private readonly record struct Descriptor(uint Length, uint Flags);
}
