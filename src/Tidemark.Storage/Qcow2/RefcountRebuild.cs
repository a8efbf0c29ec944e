using System.Buffers.Binary;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// Writes a new refcount structure from counted references alone, as QEMU's
/// <c>rebuild_refcount_structure</c> (7.1 and later) does, so the result lands where qemu-img's
/// would: each refcount block in the first free cluster at or after the first cluster it covers,
/// then the table in the first free run from the start, repeated until the table stops growing.
/// </summary>
/// <remarks>
/// The counts are the in-memory refcount table of the check; every allocation here is entered
/// in it, so the blocks written describe themselves and the table. Nothing is freed: the old
/// structure is left referenced by nobody and the recount that follows frees it as leaks.
/// </remarks>
internal sealed class RefcountRebuild
{
    private readonly HostFile _file;
    private readonly Qcow2Header _header;
    private readonly int _blockBits;
    private ulong[] _counts;
    private long _clusters;
    private long[] _table = [];

    private RefcountRebuild(HostFile file, Qcow2Header header, uint[] references)
    {
        _file = file;
        _header = header;
        _blockBits = header.ClusterBits + 3 - header.RefcountOrder;
        _clusters = references.Length;
        _counts = new ulong[Math.Max(16, references.Length)];
        for (var i = 0; i < references.Length; i++)
        {
            _counts[i] = references[i];
        }
    }

    /// <summary>Writes the blocks and the table, flushes, then points the header at the table and flushes.</summary>
    public static async ValueTask RunAsync(HostFile file, Qcow2Header header, uint[] references, CancellationToken cancellationToken)
    {
        var rebuild = new RefcountRebuild(file, header, references);
        await rebuild.RunAsync(cancellationToken).ConfigureAwait(false);
    }

    private int ClusterSize => _header.ClusterSize;

    private async ValueTask RunAsync(CancellationToken cancellationToken)
    {
        await WriteBlocksAsync(0, _clusters, cancellationToken).ConfigureAwait(false);
        long tableOffset;
        long tableClusters;
        bool grown;
        do
        {
            tableClusters = ((_table.Length * 8L) + ClusterSize - 1) / ClusterSize;
            if (tableClusters * ClusterSize > Qcow2Layout.MaxRefcountTableBytes)
            {
                throw new StorageException(StorageErrorReason.LimitExceeded, "This operation would make the refcount table grow beyond the maximum size supported by QEMU, aborting");
            }

            (tableOffset, _) = Allocate((int)tableClusters, 0);

            // The table's clusters changed counts the blocks already written hold: write them again.
            var start = tableOffset / ClusterSize;
            grown = await WriteBlocksAsync(start, start + tableClusters, cancellationToken).ConfigureAwait(false);
        }
        while (grown);

        var bytes = new byte[tableClusters * ClusterSize];
        for (var i = 0; i < _table.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * 8), (ulong)_table[i]);
        }

        await _file.WriteAsync(tableOffset, bytes, cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
        var fields = new byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(fields, (ulong)tableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(fields.AsSpan(8), (uint)tableClusters);
        await _file.WriteAsync(Qcow2Layout.RefcountTableOffsetOffset, fields, cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// rebuild_refcounts_write_refblocks: writes the block of every used cluster in
    /// [<paramref name="first"/>, <paramref name="end"/>), allocating the blocks not yet placed;
    /// true when the table had to grow for them.
    /// </summary>
    private async ValueTask<bool> WriteBlocksAsync(long first, long end, CancellationToken cancellationToken)
    {
        var grown = false;
        var firstFree = 0L;
        for (var cluster = first; cluster < end; cluster++)
        {
            if (Count(cluster) == 0)
            {
                continue;
            }

            var index = cluster >> _blockBits;
            var blockStart = index << _blockBits;
            long offset;
            if (index < _table.Length && _table[index] != 0)
            {
                offset = _table[index];
            }
            else
            {
                // Never into a block already written: allocations start at this block's first cluster.
                (offset, firstFree) = Allocate(1, Math.Max(firstFree, blockStart));
                if (offset / ClusterSize >= end)
                {
                    end = (offset / ClusterSize) + 1;
                }

                if (_table.Length <= index)
                {
                    var entries = (((index + 1) * 8) + ClusterSize - 1) / ClusterSize * ClusterSize / 8;
                    Array.Resize(ref _table, (int)entries);
                    grown = true;
                }

                _table[index] = offset;
            }

            var block = new RefcountBlock(offset, new byte[ClusterSize], _header.RefcountOrder);
            for (var i = 0; i < 1 << _blockBits; i++)
            {
                var count = Count(blockStart + i);
                if (count != 0)
                {
                    block[i] = Math.Min(count, block.MaxRefcount);
                }
            }

            await _file.WriteAsync(offset, block.Data, cancellationToken).ConfigureAwait(false);
            cluster = blockStart + (1L << _blockBits) - 1;
        }

        return grown;
    }

    /// <summary>
    /// alloc_clusters_imrt: the first run of <paramref name="count"/> free clusters at or after
    /// <paramref name="firstFree"/>, growing the file's cluster count when none is left; returns
    /// its offset and the first free cluster seen.
    /// </summary>
    private (long Offset, long FirstFree) Allocate(int count, long firstFree)
    {
        var cluster = firstFree;
        var firstGap = true;
        var contiguous = 0;
        for (; cluster < _clusters && contiguous < count; cluster++)
        {
            if (Count(cluster) == 0)
            {
                contiguous++;
                if (firstGap)
                {
                    firstFree = cluster;
                    firstGap = false;
                }
            }
            else
            {
                contiguous = 0;
            }
        }

        if (contiguous < count)
        {
            _clusters = cluster + count - contiguous;
            if (_clusters > _counts.Length)
            {
                Array.Resize(ref _counts, (int)Math.Max(_clusters, _counts.Length * 2L));
            }
        }

        cluster -= contiguous;
        for (var i = 0; i < count; i++)
        {
            _counts[cluster + i] = 1;
        }

        return (cluster * ClusterSize, firstFree);
    }

    private ulong Count(long cluster) => cluster < _clusters ? _counts[cluster] : 0;
}
