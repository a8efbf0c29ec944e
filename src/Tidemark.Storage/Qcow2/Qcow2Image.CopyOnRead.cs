namespace Tidemark.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    /// <summary>
    /// Copy-on-read (QEMU's copy-on-read filter, <c>bdrv_co_do_copy_on_readv</c>): every cluster
    /// of the range, widened to whole clusters, that this image does not allocate gets what
    /// reads there now, from the backing chain: its data in a new cluster, or the zero flag where
    /// it reads as zeroes (a v2 image, which has no zero flag, leaves those alone). The content
    /// does not change, so no bitmap records it, as QEMU's copy counts as a read.
    /// </summary>
    /// <remarks>
    /// Done under the metadata lock, which a guest write to a cluster that is not allocated needs
    /// too: a write cannot land between the copy's read and its write. Images with extended L2
    /// entries are left as they are.
    /// </remarks>
    public async ValueTask CopyOnReadAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        if (length == 0 || _header.HasExtendedL2)
        {
            return;
        }

        var bits = _header.ClusterBits;
        var clusterSize = _header.ClusterSize;
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            var changed = false;
            byte[]? content = null;
            for (var cluster = offset >> bits; cluster << bits < offset + length; cluster++)
            {
                var entry = await _map.GetEntryAsync(cluster, cancellationToken).ConfigureAwait(false);
                if (entry.Kind != ClusterKind.Unallocated)
                {
                    continue;
                }

                var clusterStart = cluster << bits;
                var valid = (int)Math.Min(clusterSize, VirtualSize - clusterStart);
                content ??= new byte[clusterSize];
                Array.Clear(content);
                await ReadBackingAsync(clusterStart, content.AsMemory(0, valid), cancellationToken).ConfigureAwait(false);
                if (!ZeroDetection.IsZero(content.AsSpan(0, valid)))
                {
                    await WriteNewClusterAsync(cluster, entry, 0, content.AsMemory(0, clusterSize), cancellationToken).ConfigureAwait(false);
                    changed = true;
                }
                else if (_header.Version >= 3)
                {
                    await SetEntryAsync(cluster, Qcow2Layout.OflagZero, cancellationToken).ConfigureAwait(false);
                    changed = true;
                }
            }

            if (changed)
            {
                await AfterChangeAsync(WriteFlags.None, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _lock.Release();
        }
    }
}
