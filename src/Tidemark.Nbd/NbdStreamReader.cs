using System.Buffers;

namespace Tidemark.Nbd;

/// <summary>
/// Reads exact-length frames from a stream through one pooled buffer. Small reads (headers)
/// come from the buffer; a read at least as large as the buffer, once the buffered bytes are
/// used up, goes straight from the stream into the caller's memory (no extra copy for payloads).
/// Not thread-safe: one reader per connection.
/// </summary>
internal sealed class NbdStreamReader : IDisposable
{
    private readonly byte[] _buffer;
    private Stream _stream;
    private int _start;
    private int _end;

    public NbdStreamReader(Stream stream, int bufferSize)
    {
        _stream = stream;
        _buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
    }

    /// <summary>Bytes read from the stream and not yet consumed.</summary>
    public int Buffered => _end - _start;

    /// <summary>
    /// Switches to a new stream over the same connection (after STARTTLS). Nothing may be
    /// buffered: a client that sent bytes before the TLS handshake has broken the protocol.
    /// </summary>
    public void Replace(Stream stream)
    {
        if (Buffered != 0)
        {
            throw new NbdException(NbdErrorReason.ProtocolViolation, "the client sent data after STARTTLS before the TLS handshake");
        }

        _stream = stream;
    }

    /// <summary>
    /// Fills <paramref name="destination"/> entirely. Returns false when the stream ends cleanly
    /// before the first byte; throws <see cref="NbdException"/> (ConnectionClosed) when it ends
    /// in the middle.
    /// </summary>
    public async ValueTask<bool> TryReadExactAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        var done = 0;
        while (done < destination.Length)
        {
            if (_start < _end)
            {
                var n = Math.Min(_end - _start, destination.Length - done);
                _buffer.AsSpan(_start, n).CopyTo(destination.Span[done..]);
                _start += n;
                done += n;
                continue;
            }

            var remaining = destination.Length - done;
            int read;
            if (remaining >= _buffer.Length)
            {
                read = await _stream.ReadAsync(destination[done..], cancellationToken).ConfigureAwait(false);
                done += read;
            }
            else
            {
                _start = 0;
                _end = read = await _stream.ReadAsync(_buffer, cancellationToken).ConfigureAwait(false);
            }

            if (read == 0)
            {
                if (done == 0)
                {
                    return false;
                }

                throw new NbdException(NbdErrorReason.ConnectionClosed, $"the connection closed in the middle of a message ({done} of {destination.Length} bytes)");
            }
        }

        return true;
    }

    /// <summary>Fills <paramref name="destination"/> entirely or throws (ConnectionClosed).</summary>
    public async ValueTask ReadExactAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (!await TryReadExactAsync(destination, cancellationToken).ConfigureAwait(false) && destination.Length > 0)
        {
            throw new NbdException(NbdErrorReason.ConnectionClosed, "the connection closed");
        }
    }

    /// <summary>Reads and drops <paramref name="count"/> bytes, keeping the stream framed.</summary>
    public async ValueTask SkipAsync(long count, CancellationToken cancellationToken)
    {
        while (count > 0)
        {
            if (_start == _end)
            {
                _start = 0;
                _end = await _stream.ReadAsync(_buffer, cancellationToken).ConfigureAwait(false);
                if (_end == 0)
                {
                    throw new NbdException(NbdErrorReason.ConnectionClosed, $"the connection closed with {count} bytes still to skip");
                }
            }

            var n = (int)Math.Min(count, _end - _start);
            _start += n;
            count -= n;
        }
    }

    public void Dispose() => ArrayPool<byte>.Shared.Return(_buffer);
}
