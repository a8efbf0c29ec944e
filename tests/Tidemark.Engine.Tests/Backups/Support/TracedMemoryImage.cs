using Tidemark.Storage;

namespace Tidemark.Engine.Tests.Backups.Support;

/// <summary>
/// A disk in memory whose reads and writes yield in the middle, so that concurrent requests
/// really overlap, and which records every time a read and a write of overlapping bytes were
/// in flight together. As a live image it sees only guest writes and job reads: any such
/// overlap breaks copy-before-write's contract.
/// </summary>
internal sealed class TracedMemoryImage : IBlockImage
{
    private readonly Lock _lock = new();
    private readonly byte[] _data;
    private readonly bool[] _allocated;
    private readonly int _cluster;
    private readonly List<(long Offset, long End, bool Write)> _inFlight = [];
    private readonly Random _random;
    private int _overlaps;

    public TracedMemoryImage(byte[] data, bool[] allocated, int cluster, int seed)
    {
        _data = data;
        _allocated = allocated;
        _cluster = cluster;
        _random = new Random(seed);
    }

    /// <summary>Times a read and a write of the same bytes were in flight together.</summary>
    public int Overlaps => Volatile.Read(ref _overlaps);

    public byte[] Snapshot()
    {
        lock (_lock)
        {
            return (byte[])_data.Clone();
        }
    }

    public long VirtualSize => _data.Length;

    public bool IsReadOnly => false;

    public int AllocationGranularity => _cluster;

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var entry = Begin(offset, buffer.Length, write: false);
        try
        {
            await PauseAsync();
            lock (_lock)
            {
                _data.AsSpan((int)offset, buffer.Length).CopyTo(buffer.Span);
            }

            await PauseAsync();
        }
        finally
        {
            End(entry);
        }
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
    {
        var entry = Begin(offset, data.Length, write: true);
        try
        {
            await PauseAsync();
            lock (_lock)
            {
                data.Span.CopyTo(_data.AsSpan((int)offset));
                for (var c = offset / _cluster; c <= (offset + data.Length - 1) / _cluster; c++)
                {
                    _allocated[c] = true;
                }
            }

            await PauseAsync();
        }
        finally
        {
            End(entry);
        }
    }

    public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None, CancellationToken cancellationToken = default)
        => WriteAsync(offset, new byte[length], flags, cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask<IReadOnlyList<BlockExtent>> GetExtentsAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        var extents = new List<BlockExtent>();
        lock (_lock)
        {
            for (var position = offset; position < Math.Min(_data.Length, offset + length);)
            {
                var allocated = _allocated[position / _cluster];
                var end = (position / _cluster + 1) * _cluster;
                extents.Add(new BlockExtent(position, end - position, allocated ? ExtentKind.Data : ExtentKind.Hole | ExtentKind.Zero, allocated ? 1 : 0));
                position = end;
            }
        }

        return ValueTask.FromResult<IReadOnlyList<BlockExtent>>(extents);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private (long, long, bool) Begin(long offset, long length, bool write)
    {
        var entry = (offset, offset + length, write);
        lock (_lock)
        {
            if (_inFlight.Exists(e => e.Write != write && e.Offset < entry.Item2 && offset < e.End))
            {
                _overlaps++;
            }

            _inFlight.Add(entry);
        }

        return entry;
    }

    private void End((long, long, bool) entry)
    {
        lock (_lock)
        {
            _inFlight.Remove(entry);
        }
    }

    private Task PauseAsync()
    {
        int choice;
        lock (_lock)
        {
            choice = _random.Next(4);
        }

        return choice == 0 ? Task.Delay(1) : Task.Run(() => { });
    }
}
