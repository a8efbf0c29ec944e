using Tidemark.Storage.Qcow2.Bitmaps;

namespace Tidemark.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    /// <summary>
    /// Removes persistent bitmap <paramref name="name"/> from this image while it stays open
    /// read-only, usually as a backing layer of a running disk. The file is reopened read-write
    /// for the change only, as QEMU reopens a backing node read-write for
    /// <c>block-dirty-bitmap-remove</c> and libvirt sets it back read-only afterwards (spec
    /// libvirt-checkpoint-backup §6.4, "discard").
    /// </summary>
    /// <remarks>
    /// Locks follow QEMU's reopen (formats.md §1.8): this image gives up denying others the write
    /// and resize permissions, a second open of the file takes the read-write set (so another
    /// process that reads the file, such as a VM sharing this base image, makes the reopen fail
    /// with QEMU's "Failed to get "write" lock"), the bitmap is removed and the remaining ones
    /// stored as a close of a read-write image stores them, and the denials are taken back. Guest
    /// data clusters and their tables are not touched, so reads through this image stay valid;
    /// its header and bitmap list are read again from the file afterwards.
    /// </remarks>
    /// <exception cref="InvalidOperationException">The image is open read-write (remove through <see cref="Bitmaps"/>).</exception>
    /// <exception cref="StorageException">No such bitmap, the file locked by another process, or the change failed.</exception>
    public async ValueTask RemoveBitmapReopeningAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!IsReadOnly)
        {
            throw new InvalidOperationException($"{Path}: the image is open read-write; remove the bitmap through its bitmap set");
        }

        _ = _bitmaps.Find(name) ?? throw BitmapErrors.Missing(name);
        ObjectDisposedException.ThrowIf(_fileClosed, this);
        ImageLock.ReleaseDenials(_file.Handle);
        try
        {
            var writable = await OpenAsync(Path, readOnly: false, chain: null, stated: null, cancellationToken).ConfigureAwait(false);
            try
            {
                await writable.Bitmaps.RemoveAsync(name, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                await writable.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            ImageLock.RestoreDenials(_file.Handle, Path);
        }

        await ReloadBitmapsAsync(cancellationToken).ConfigureAwait(false);
    }

    // The header (its bitmaps extension) and the bitmap list as the file now has them. Only
    // bitmap metadata changed under this read-only image, never its L1/L2 tables.
    private async ValueTask ReloadBitmapsAsync(CancellationToken cancellationToken)
    {
        var cluster0 = new byte[_header.ClusterSize];
        await _file.ReadAsync(0, cluster0, cancellationToken).ConfigureAwait(false);
        var header = Qcow2Header.Parse(cluster0, _file.Length, _file.Path);
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _header = header;
        }
        finally
        {
            _lock.Release();
        }

        await LoadBitmapsAsync(cancellationToken).ConfigureAwait(false);
    }
}
