using System.Diagnostics.CodeAnalysis;
using System.Text;
using Tidemark.Storage.Bitmaps;

namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>
/// The dirty bitmaps of one open qcow2 image, and QEMU's protocol for keeping the persistent
/// ones in the file (formats.md §2.6, QEMU <c>block/qcow2-bitmap.c</c>): loaded at open, marked
/// IN_USE on disk while the image is open read-write, written back with IN_USE cleared at clean
/// close. A crash therefore leaves every bitmap IN_USE, and IN_USE at open means inconsistent.
/// </summary>
/// <remarks>
/// <para>Add, clear, enable, disable and merge change only memory; like QEMU, a new persistent
/// bitmap reaches the file at clean close, and remove is written at once.</para>
/// <para>Locking: <see cref="_gate"/> serialises every operation that changes the set or the
/// file. <see cref="MarkDirty"/> takes no part in it: it reads <see cref="_recording"/>, an
/// immutable array replaced (under the gate) whenever a bitmap is added, removed, enabled or
/// disabled, and each <see cref="DirtyBitmap"/> has its own short in-memory lock.</para>
/// </remarks>
[SuppressMessage("Design", "CA1001", Justification = "The SemaphoreSlim never creates a wait handle (only WaitAsync is used), so there is nothing to dispose.")]
public sealed class Qcow2BitmapSet
{
    /// <summary>The longest bitmap name, in UTF-8 bytes (formats.md §2.5; QEMU's BME_MAX_NAME_SIZE).</summary>
    public const int MaxNameBytes = BitmapDirectoryEntry.MaxNameBytes;

    /// <summary>
    /// Memory all loaded bitmaps of one image may take together: 2 GiB, four times QEMU's
    /// cap for a single bitmap (BME_MAX_PHYS_SIZE) and 1000 times what a 1 TiB disk needs at
    /// 64 KiB; without it a crafted directory of 65535 maximal bitmaps could ask for 32 TiB.
    /// </summary>
    public const long MaxLoadedBytes = 2L << 30;

    private readonly IQcow2ClusterSpace _space;
    private readonly SemaphoreSlim _gate = new(1, 1);

    // In directory order: loaded ones first, then added ones. Guarded by _gate.
    private readonly List<Qcow2Bitmap> _bitmaps;

    // The directory as it is on disk now (flags included) and the extension pointing at it.
    // Guarded by _gate.
    private List<BitmapDirectoryEntry> _directory;
    private BitmapsExtension? _extension;
    private bool _stored;

    private DirtyBitmap[] _recording = [];

    private Qcow2BitmapSet(IQcow2ClusterSpace space, List<Qcow2Bitmap> bitmaps, List<BitmapDirectoryEntry> directory, BitmapsExtension? extension)
    {
        _space = space;
        _bitmaps = bitmaps;
        _directory = directory;
        _extension = extension;
        UpdateRecording();
    }

    /// <summary>True when the image is open read-only: the bitmaps can be read but not changed.</summary>
    public bool IsReadOnly => _space.IsReadOnly;

    /// <summary>The bitmaps, in directory order (a snapshot).</summary>
    public IReadOnlyList<Qcow2Bitmap> Bitmaps
    {
        get
        {
            lock (_bitmaps)
            {
                return [.. _bitmaps];
            }
        }
    }

    /// <summary>The default granularity for a new bitmap: the cluster size clamped to 4..64 KiB, as QEMU does (formats.md §2.5).</summary>
    public long DefaultGranularity => Math.Clamp(_space.ClusterSize, 4096, 65536);

    /// <summary>The bitmap named <paramref name="name"/>, or null.</summary>
    public Qcow2Bitmap? Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_bitmaps)
        {
            return _bitmaps.Find(b => b.Name == name);
        }
    }

    /// <summary>The bitmap named <paramref name="name"/>.</summary>
    /// <exception cref="StorageException">There is none (<see cref="StorageErrorReason.BitmapNotFound"/>).</exception>
    public Qcow2Bitmap Get(string name) => Find(name) ?? throw BitmapErrors.Missing(name);

    /// <summary>
    /// Loads the bitmaps at open (QEMU qcow2_load_dirty_bitmaps). Every entry is checked first;
    /// any violation fails the open. A bitmap already IN_USE loads as inconsistent with no
    /// data. When the image is read-write, every consistent bitmap is then marked IN_USE on
    /// disk before this returns.
    /// </summary>
    /// <exception cref="StorageException">The extension, the directory or a table is malformed.</exception>
    internal static async ValueTask<Qcow2BitmapSet> LoadAsync(IQcow2ClusterSpace space, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(space);
        cancellationToken.ThrowIfCancellationRequested();
        if (space.BitmapsExtension is not { } payload)
        {
            return new Qcow2BitmapSet(space, [], [], null);
        }

        var extension = BitmapsExtension.Read(payload.Span, space.ClusterSize);
        var bytes = new byte[extension.DirectorySize];
        await space.ReadMetadataAsync(extension.DirectoryOffset, bytes, cancellationToken).ConfigureAwait(false);
        var directory = BitmapDirectory.Parse(bytes, extension, space.ClusterSize, space.VirtualSize);

        // Each bitmap is capped (512 MiB of data), but an image may list 65535 of them: the
        // total is checked before anything is allocated.
        var memory = directory.Where(e => !e.Flags.HasFlag(BitmapEntryFlags.InUse)).Sum(e => (long)e.TableSize * space.ClusterSize);
        if (memory > MaxLoadedBytes)
        {
            throw new StorageException(
                StorageErrorReason.LimitExceeded,
                $"bitmap directory at offset 0x{extension.DirectoryOffset:x}: its {directory.Count} bitmaps need {memory} bytes of memory together, more than {MaxLoadedBytes}");
        }

        var bitmaps = new List<Qcow2Bitmap>(directory.Count);
        foreach (var entry in directory)
        {
            var enabled = entry.Flags.HasFlag(BitmapEntryFlags.Auto);
            if (entry.Flags.HasFlag(BitmapEntryFlags.InUse))
            {
                // Whoever had the image open read-write never stored this bitmap: its bits
                // may miss writes, so they are not even read.
                bitmaps.Add(new Qcow2Bitmap(entry.Name, entry.GranularityBits, enabled, persistent: true, bitmap: null));
                continue;
            }

            bitmaps.Add(new Qcow2Bitmap(entry.Name, entry.GranularityBits, enabled, persistent: true, await LoadBitmapAsync(space, entry, cancellationToken).ConfigureAwait(false)));
        }

        var set = new Qcow2BitmapSet(space, bitmaps, directory, extension);
        if (!space.IsReadOnly && directory.Exists(e => !e.Flags.HasFlag(BitmapEntryFlags.InUse)))
        {
            await set.MarkInUseAsync(cancellationToken).ConfigureAwait(false);
        }

        return set;
    }

    /// <summary>
    /// Sets, in every enabled consistent bitmap, the bits covering [offset, offset + length).
    /// The image calls it for every write, write-zeroes and discard before acknowledging it.
    /// Thread-safe; takes only in-memory locks and never waits for I/O.
    /// </summary>
    internal void MarkDirty(long offset, long length)
    {
        foreach (var bitmap in Volatile.Read(ref _recording))
        {
            bitmap.SetRange(offset, length);
        }
    }

    /// <summary>
    /// At clean close of a read-write image (QEMU qcow2_store_persistent_dirty_bitmaps): writes
    /// every persistent consistent bitmap into new clusters, then a new directory with IN_USE
    /// cleared, then points the header at it, then frees the old clusters. Inconsistent
    /// bitmaps keep their entries as they are. The set is closed afterwards.
    /// </summary>
    /// <remarks>
    /// What a crash leaves behind, step by step: while data, tables and the new directory are
    /// written, the header still points at the old directory whose bitmaps are IN_USE, so
    /// they load as inconsistent and the new clusters are leaks. The header switch is one
    /// write of cluster 0's first page followed by a flush
    /// (<see cref="IQcow2ClusterSpace.WriteBitmapsExtensionAsync"/>): the old state or the new
    /// one. Only after it are the old clusters freed, which can at worst leave them leaked.
    /// </remarks>
    internal async ValueTask StoreAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_stored || _space.IsReadOnly)
            {
                return;
            }

            _stored = true;
            Volatile.Write(ref _recording, []);
            var toStore = _bitmaps.Where(b => b.Persistent && !b.Inconsistent).ToList();
            if (toStore.Count == 0)
            {
                return;
            }

            var written = new List<(Qcow2Bitmap Bitmap, BitmapDirectoryEntry Entry, ulong[] Data)>();
            try
            {
                foreach (var bitmap in toStore)
                {
                    var data = await BitmapTable.StoreDataAsync(_space, bitmap.Bitmap, cancellationToken).ConfigureAwait(false);
                    var table = BitmapTable.Encode(data, _space.ClusterSize);
                    long tableOffset;
                    try
                    {
                        tableOffset = await _space.AllocateClustersAsync(BitmapTable.Clusters(data.Length, _space.ClusterSize), cancellationToken).ConfigureAwait(false);
                        await _space.WriteMetadataAsync(tableOffset, table, cancellationToken).ConfigureAwait(false);
                    }
                    catch
                    {
                        await BitmapTable.FreeDataAsync(_space, data, CancellationToken.None).ConfigureAwait(false);
                        throw;
                    }

                    var flags = bitmap.Enabled ? BitmapEntryFlags.Auto : BitmapEntryFlags.None;
                    written.Add((bitmap, new BitmapDirectoryEntry(tableOffset, (uint)data.Length, flags, bitmap.GranularityBits, bitmap.Name), data));
                }
            }
            catch
            {
                await FreeWrittenAsync(written).ConfigureAwait(false);
                throw;
            }

            // The new directory: entries already on disk keep their place (the stored ones with
            // their new table and flags, inconsistent ones unchanged), then the new bitmaps.
            var byName = written.ToDictionary(w => w.Bitmap.Name, w => w.Entry, StringComparer.Ordinal);
            var replaced = _directory.Where(e => byName.ContainsKey(e.Name)).ToList();
            var directory = _directory.Select(e => byName.GetValueOrDefault(e.Name, e)).ToList();
            directory.AddRange(written.Where(w => !_directory.Exists(e => e.Name == w.Bitmap.Name)).Select(w => w.Entry));
            try
            {
                await ReplaceDirectoryAsync(directory, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await FreeWrittenAsync(written).ConfigureAwait(false);
                throw;
            }

            foreach (var old in replaced)
            {
                await FreeTableAsync(old, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Adds an empty bitmap (<c>qemu-img bitmap --add</c>, QMP block-dirty-bitmap-add).</summary>
    /// <param name="name">1..1023 UTF-8 bytes, unique in the image (inconsistent bitmaps included).</param>
    /// <param name="granularity">Bytes per bit; null for <see cref="DefaultGranularity"/>.</param>
    /// <param name="enabled">Record writes from now on (AUTO).</param>
    /// <param name="persistent">Store it in the image at clean close.</param>
    /// <param name="cancellationToken">Cancels the wait for other operations.</param>
    /// <exception cref="StorageException">Bad name or granularity, a duplicate, a read-only image, or QEMU's limits exceeded.</exception>
    public async ValueTask<Qcow2Bitmap> AddAsync(string name, long? granularity = null, bool enabled = true, bool persistent = true, CancellationToken cancellationToken = default)
    {
        BitmapDirectoryEntry.CheckName(name);
        var g = granularity ?? DefaultGranularity;
        BitmapErrors.CheckGranularity(g);

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CheckWritable(name);
            if (_bitmaps.Exists(b => b.Name == name))
            {
                throw BitmapErrors.Exists(name);
            }

            var granularityBits = System.Numerics.BitOperations.TrailingZeroCount(g);
            if (persistent && !_space.CanStoreBitmaps)
            {
                throw BitmapErrors.VersionTwo();
            }

            if (persistent)
            {
                CheckCanStore(name, granularityBits);
            }

            DirtyBitmap bits;
            try
            {
                bits = new DirtyBitmap(_space.VirtualSize, g);
            }
            catch (ArgumentOutOfRangeException)
            {
                throw new StorageException(StorageErrorReason.LimitExceeded, $"bitmap '{name}' would need more than 2^32 bits; use a larger granularity");
            }

            var bitmap = new Qcow2Bitmap(name, granularityBits, enabled, persistent, bits);
            lock (_bitmaps)
            {
                _bitmaps.Add(bitmap);
            }

            UpdateRecording();
            return bitmap;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Removes a bitmap, inconsistent ones included (<c>qemu-img bitmap --remove</c>). A
    /// persistent bitmap already in the file is removed from it at once: a new directory
    /// without it (or no bitmaps extension at all when it was the last), then its clusters
    /// are freed.
    /// </summary>
    /// <exception cref="StorageException">No such bitmap, a read-only image, or refcounts found damaged while freeing (the image is then broken).</exception>
    public async ValueTask RemoveAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CheckWritable(name);
            var bitmap = _bitmaps.Find(b => b.Name == name) ?? throw BitmapErrors.Missing(name);
            var onDisk = _directory.FindIndex(e => e.Name == name);
            if (onDisk >= 0)
            {
                var old = _directory[onDisk];
                var directory = new List<BitmapDirectoryEntry>(_directory);
                directory.RemoveAt(onDisk);
                await ReplaceDirectoryAsync(directory, cancellationToken).ConfigureAwait(false);
                await FreeTableAsync(old, cancellationToken).ConfigureAwait(false);

                // Apply the frees now, so refcounts that are already too low fail this call
                // (and break the image) rather than the close.
                await _space.FlushAsync(cancellationToken).ConfigureAwait(false);
            }

            lock (_bitmaps)
            {
                _bitmaps.Remove(bitmap);
            }

            UpdateRecording();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Marks every bit of a bitmap clean (<c>qemu-img bitmap --clear</c>).</summary>
    public ValueTask ClearAsync(string name, CancellationToken cancellationToken = default) =>
        ChangeAsync(name, b => b.Bitmap.Clear(), cancellationToken);

    /// <summary>Makes a bitmap record writes (<c>qemu-img bitmap --enable</c>).</summary>
    public ValueTask EnableAsync(string name, CancellationToken cancellationToken = default) =>
        ChangeAsync(name, b => b.Enabled = true, cancellationToken);

    /// <summary>Freezes a bitmap's content (<c>qemu-img bitmap --disable</c>).</summary>
    public ValueTask DisableAsync(string name, CancellationToken cancellationToken = default) =>
        ChangeAsync(name, b => b.Enabled = false, cancellationToken);

    /// <summary>
    /// target |= source (<c>qemu-img bitmap --merge SOURCE</c>): every bit dirty in the source
    /// is dirty in the target afterwards, across granularities too. The source may come from
    /// another image (<c>-b</c>), if it covers the same disk size.
    /// </summary>
    /// <exception cref="StorageException">No such target, an inconsistent target, a read-only image, or different sizes.</exception>
    public ValueTask MergeAsync(string target, DirtyBitmap source, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        return ChangeAsync(
            target,
            b =>
            {
                if (source.Size != b.Bitmap.Size)
                {
                    throw new StorageException(StorageErrorReason.InvalidRequest, $"cannot merge a bitmap of a {source.Size}-byte disk into '{target}' of a {b.Bitmap.Size}-byte disk");
                }

                b.Bitmap.Merge(source);
            },
            cancellationToken);
    }

    private static async ValueTask<DirtyBitmap> LoadBitmapAsync(IQcow2ClusterSpace space, BitmapDirectoryEntry entry, CancellationToken cancellationToken)
    {
        var expected = BitmapTable.ExpectedSize(space.VirtualSize, entry.GranularityBits, space.ClusterSize);
        if (entry.TableSize != expected)
        {
            throw new StorageException(
                StorageErrorReason.Corrupt,
                $"bitmap '{entry.Name}' (table at offset 0x{entry.TableOffset:x}): bitmap_table_size is {entry.TableSize}, a {space.VirtualSize}-byte disk at granularity {1L << entry.GranularityBits} needs exactly {expected}");
        }

        DirtyBitmap bitmap;
        try
        {
            bitmap = new DirtyBitmap(space.VirtualSize, 1L << entry.GranularityBits);
        }
        catch (ArgumentOutOfRangeException)
        {
            throw new StorageException(StorageErrorReason.LimitExceeded, $"bitmap '{entry.Name}' would need more than 2^32 bits");
        }

        var table = await ReadTableAsync(space, entry, cancellationToken).ConfigureAwait(false);
        await BitmapTable.LoadDataAsync(space, table, bitmap, cancellationToken).ConfigureAwait(false);
        return bitmap;
    }

    private static async ValueTask<ulong[]> ReadTableAsync(IQcow2ClusterSpace space, BitmapDirectoryEntry entry, CancellationToken cancellationToken)
    {
        // The directory check bounds TableSize (data ≤ 512 MiB), so this allocation is bounded.
        var bytes = new byte[(long)entry.TableSize * BitmapTable.EntrySize];
        await space.ReadMetadataAsync(entry.TableOffset, bytes, cancellationToken).ConfigureAwait(false);
        return BitmapTable.Decode(bytes, entry.TableOffset, space.ClusterSize, entry.Name);
    }

    /// <summary>
    /// Sets IN_USE on every entry by writing the marked directory into new clusters and
    /// switching the header to it (<see cref="ReplaceDirectoryAsync"/>), where QEMU rewrites
    /// the directory in place (update_ext_header_and_dir_in_place): QEMU first clears autoclear
    /// bit 0, and a crash before it sets the bit again leaves every bitmap of the image
    /// ignored, older checkpoints' included. Here the bit stays set throughout and the header
    /// switch is one write within cluster 0's first page, so a crash at any point leaves the
    /// old directory (clean bitmaps, still valid: no guest write precedes this) or the new one
    /// (IN_USE: inconsistent), and at worst leaked clusters. QEMU reads either file as it
    /// reads its own (formats.md §2.6: only the extension's directory offset moved).
    /// </summary>
    private ValueTask MarkInUseAsync(CancellationToken cancellationToken) =>
        ReplaceDirectoryAsync([.. _directory.Select(e => e with { Flags = e.Flags | BitmapEntryFlags.InUse })], cancellationToken);

    /// <summary>
    /// Writes <paramref name="directory"/> into new clusters, flushes, points the header at it
    /// (or drops the extension when it is empty) and frees the old directory's clusters
    /// (QEMU update_ext_header_and_dir). On failure the in-memory state is unchanged and the
    /// new clusters are given back.
    /// </summary>
    private async ValueTask ReplaceDirectoryAsync(List<BitmapDirectoryEntry> directory, CancellationToken cancellationToken)
    {
        var clusterSize = _space.ClusterSize;
        BitmapsExtension? extension = null;
        var clusters = 0;
        if (directory.Count > 0)
        {
            var size = BitmapDirectory.SizeOf(directory);
            if (directory.Count > BitmapsExtension.MaxBitmaps || size > BitmapsExtension.MaxDirectorySize)
            {
                throw new StorageException(StorageErrorReason.LimitExceeded, $"a bitmap directory of {directory.Count} entries and {size} bytes exceeds QEMU's limits");
            }

            var bytes = BitmapDirectory.Encode(directory, clusterSize);
            clusters = bytes.Length / clusterSize;
            var offset = await _space.AllocateClustersAsync(clusters, cancellationToken).ConfigureAwait(false);
            try
            {
                await _space.WriteMetadataAsync(offset, bytes, cancellationToken).ConfigureAwait(false);
                await _space.FlushAsync(cancellationToken).ConfigureAwait(false);
                extension = new BitmapsExtension((uint)directory.Count, size, offset);
                await _space.WriteBitmapsExtensionAsync(extension.Value.ToBytes(), bitmapsConsistent: true, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await GiveBackAsync(offset, clusters).ConfigureAwait(false);
                throw;
            }
        }
        else
        {
            await _space.WriteBitmapsExtensionAsync(null, bitmapsConsistent: false, cancellationToken).ConfigureAwait(false);
        }

        var old = _extension;
        _extension = extension;
        _directory = directory;
        if (old is { } previous)
        {
            var oldClusters = (int)((previous.DirectorySize + clusterSize - 1) / clusterSize);
            await _space.FreeClustersAsync(previous.DirectoryOffset, oldClusters, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Gives back clusters allocated by an update that failed. When the failure broke the image
    /// (a flush found the refcounts damaged), the space refuses the free: the clusters then stay
    /// leaked, and the caller sees the failure itself rather than that refusal.
    /// </summary>
    private async ValueTask GiveBackAsync(long offset, int clusters)
    {
        try
        {
            await _space.FreeClustersAsync(offset, clusters, CancellationToken.None).ConfigureAwait(false);
        }
        catch (StorageException)
        {
            // Broken: nothing more is written to this image.
        }
    }

    /// <summary>
    /// Frees a bitmap's table and data clusters once no directory points at them. The table
    /// is read back and checked first; if it is damaged, its clusters are left leaked rather
    /// than risk freeing a cluster that something else uses (QEMU free_bitmap_clusters).
    /// </summary>
    private async ValueTask FreeTableAsync(BitmapDirectoryEntry entry, CancellationToken cancellationToken)
    {
        ulong[] table;
        try
        {
            table = await ReadTableAsync(_space, entry, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException)
        {
            return;
        }

        await BitmapTable.FreeDataAsync(_space, table, cancellationToken).ConfigureAwait(false);
        await _space.FreeClustersAsync(entry.TableOffset, BitmapTable.Clusters(entry.TableSize, _space.ClusterSize), cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask FreeWrittenAsync(List<(Qcow2Bitmap Bitmap, BitmapDirectoryEntry Entry, ulong[] Data)> written)
    {
        foreach (var (_, entry, data) in written)
        {
            await BitmapTable.FreeDataAsync(_space, data, CancellationToken.None).ConfigureAwait(false);
            await _space.FreeClustersAsync(entry.TableOffset, BitmapTable.Clusters(entry.TableSize, _space.ClusterSize), CancellationToken.None).ConfigureAwait(false);
        }
    }

    private async ValueTask ChangeAsync(string name, Action<Qcow2Bitmap> change, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CheckWritable(name);
            var bitmap = _bitmaps.Find(b => b.Name == name) ?? throw BitmapErrors.Missing(name);
            if (bitmap.Inconsistent)
            {
                throw BitmapErrors.Inconsistent(name);
            }

            change(bitmap);
            UpdateRecording();
        }
        finally
        {
            _gate.Release();
        }
    }

    private void CheckWritable(string name)
    {
        if (_space.IsReadOnly)
        {
            throw new StorageException(StorageErrorReason.ReadOnly, $"cannot change bitmap '{name}': the image is open read-only");
        }

        ObjectDisposedException.ThrowIf(_stored, this);
    }

    // QEMU qcow2_co_can_store_new_dirty_bitmap and check_constraints_on_bitmap.
    private void CheckCanStore(string name, int granularityBits)
    {
        var persistent = _bitmaps.Count(b => b.Persistent);
        if (persistent + 1 > BitmapsExtension.MaxBitmaps)
        {
            throw new StorageException(StorageErrorReason.LimitExceeded, $"cannot store bitmap '{name}': the image already has {persistent} persistent bitmaps, the maximum");
        }

        var directorySize = _bitmaps.Where(b => b.Persistent).Sum(b => (long)BitmapDirectoryEntry.EncodedSizeFor(Encoding.UTF8.GetByteCount(b.Name)))
            + BitmapDirectoryEntry.EncodedSizeFor(Encoding.UTF8.GetByteCount(name));
        if (directorySize > BitmapsExtension.MaxDirectorySize)
        {
            throw new StorageException(StorageErrorReason.LimitExceeded, $"cannot store bitmap '{name}': the bitmap directory would exceed {BitmapsExtension.MaxDirectorySize} bytes");
        }

        var tableSize = BitmapTable.ExpectedSize(_space.VirtualSize, granularityBits, _space.ClusterSize);
        if (tableSize > BitmapDirectoryEntry.MaxTableSize || tableSize * _space.ClusterSize > BitmapDirectoryEntry.MaxDataSize)
        {
            throw new StorageException(StorageErrorReason.LimitExceeded, $"cannot store bitmap '{name}': too much space would be occupied by the bitmap; use a larger granularity");
        }
    }

    /// <summary>
    /// Resizes every consistent bitmap to a grown image's size (the new area clean); the image
    /// calls it once its header holds the new size. Stored with the new size at close.
    /// </summary>
    internal void Resize(long newSize)
    {
        lock (_bitmaps)
        {
            foreach (var bitmap in _bitmaps.Where(b => !b.Inconsistent))
            {
                bitmap.Resize(newSize);
            }
        }

        UpdateRecording();
    }

    private void UpdateRecording()
    {
        DirtyBitmap[] recording;
        lock (_bitmaps)
        {
            recording = _stored ? [] : [.. _bitmaps.Where(b => b.Enabled && !b.Inconsistent).Select(b => b.Bitmap)];
        }

        Volatile.Write(ref _recording, recording);
    }
}
