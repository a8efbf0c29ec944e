namespace Tidemark.Storage.Qcow2;

// The two metadata changes behind qemu-img rebase and commit.
//
// Changing the backing file (qcow2_change_backing_file -> qcow2_update_header): pending
// metadata is written back first, then cluster 0 is rewritten in one write with the new name
// and backing format extension, and flushed. A crash leaves the old header or the new one
// (cluster 0 is written whole; the name and the extension sit in its first sector for every
// name QEMU accepts with the usual extensions).
//
// Emptying (qcow2_make_empty, the fallback path that discards every cluster with
// full_discard): each L2 entry becomes 0, so the guest reads the backing file there, and the
// clusters it held are released. The caches' write-back order (Qcow2Image.Write.cs) applies: the
// new entries are durable before any refcount drops, so a crash leaves at worst leaked clusters,
// never an entry pointing at a freed cluster. QEMU's faster path (make_completely_empty, which
// rebuilds the whole file under the dirty bit) gives the same guest content; the file keeps its
// L2 tables here, as QEMU's fallback leaves them.
public sealed partial class Qcow2Image
{
    /// <summary>
    /// Names a new backing file (or none) in the header, as <c>qemu-img rebase -u</c> does: only
    /// the header changes. The open image keeps reading through the chain it was opened with;
    /// reopen it to read through the new one.
    /// </summary>
    /// <param name="backingFile">The name to store (as given, relative names from this image's directory), or null for none.</param>
    /// <param name="backingFormat">The backing format to store, or null to store none.</param>
    /// <exception cref="StorageException">The name does not fit in cluster 0 (qemu-img's "No space left in the file header"), or the image is read-only or broken.</exception>
    public async ValueTask ChangeBackingFileAsync(string? backingFile, ImageFormat? backingFormat, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        cancellationToken.ThrowIfCancellationRequested();
        if (backingFile is null && backingFormat is not null)
        {
            throw new ArgumentException("a backing format needs a backing file", nameof(backingFormat));
        }

        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var header = _header with { BackingFile = string.IsNullOrEmpty(backingFile) ? null : backingFile, BackingFormat = backingFormat?.ToName() };
            try
            {
                _ = header.Serialize();
            }
            catch (StorageException e) when (e.Reason is StorageErrorReason.LimitExceeded or StorageErrorReason.InvalidRequest)
            {
                // qcow2_update_header fails with ENOSPC; img_rebase words it so.
                throw new StorageException(StorageErrorReason.LimitExceeded, $"Could not change the backing file to '{backingFile}': No space left in the file header", e);
            }

            await FlushMetadataAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await RewriteHeaderAsync(header, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw Break(e, "changing the backing file");
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// Makes every cluster unallocated, so the image reads as its backing file (what
    /// <c>qemu-img commit</c> does to the top image after committing it, qcow2_make_empty).
    /// Dirty bitmaps are not marked: the guest content does not change when the backing file
    /// holds the committed data, and QEMU calls the driver directly, below the bitmaps.
    /// </summary>
    /// <exception cref="StorageException">The image is read-only or broken, or its metadata is damaged.</exception>
    public async ValueTask MakeEmptyAsync(CancellationToken cancellationToken = default)
    {
        CheckWritable();
        cancellationToken.ThrowIfCancellationRequested();
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var bits = _header.ClusterBits;
            var clusters = (VirtualSize + _header.ClusterSize - 1) >> bits;
            var perTable = (long)_header.L2Entries;
            for (var cluster = 0L; cluster < clusters; cluster++)
            {
                var (l1, _) = _map.Locate(cluster);
                if ((_map.L1Entry(l1) & Qcow2Layout.L1OffsetMask) == 0)
                {
                    // No L2 table: the whole table's span is unallocated already.
                    cluster = ((l1 + 1) * perTable) - 1;
                    continue;
                }

                var entry = await _map.GetEntryAsync(cluster, cancellationToken).ConfigureAwait(false);
                if (entry.Kind == ClusterKind.Unallocated)
                {
                    continue;
                }

                try
                {
                    await SetEntryAsync(cluster, 0, cancellationToken).ConfigureAwait(false);
                    Release(entry);
                    await AfterChangeAsync(WriteFlags.None, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    throw Break(e, "emptying the image");
                }
            }

            await FlushMetadataAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lock.Release();
        }
    }
}
