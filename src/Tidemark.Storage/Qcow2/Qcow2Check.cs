using Tidemark.Storage.Qcow2.Bitmaps;

namespace Tidemark.Storage.Qcow2;

/// <summary>What a consistency check found (the fields of <c>qemu-img check --output=json</c>).</summary>
public sealed record Qcow2CheckResult
{
    public required string Path { get; init; }

    /// <summary>Refcounts lower than the references found, bad flags, references outside the file.</summary>
    public required long Corruptions { get; init; }

    /// <summary>Clusters counted but not referenced.</summary>
    public required long Leaks { get; init; }

    public long CheckErrors { get; init; }

    public required long TotalClusters { get; init; }

    public required long AllocatedClusters { get; init; }

    public required long FragmentedClusters { get; init; }

    public required long CompressedClusters { get; init; }

    public required long ImageEndOffset { get; init; }

    /// <summary>Leaked clusters a repair freed (<c>leaks_fixed</c>).</summary>
    public long LeaksFixed { get; init; }

    /// <summary>Corruptions a repair fixed (<c>corruptions_fixed</c>).</summary>
    public long CorruptionsFixed { get; init; }

    /// <summary>
    /// Why the check could not complete, in strerror's words (qemu-img: "Check failed: %s"), or
    /// null; then no summary is shown and the exit status is 1.
    /// </summary>
    public string? Failure { get; init; }

    /// <summary>One line per problem, worded as qemu-img words them.</summary>
    public required IReadOnlyList<string> Messages { get; init; }

    /// <summary>
    /// qemu-img check's exit status: 1 when some refcounts could not be read (the check did not
    /// complete: "Check failed"), else 0 clean, 2 corrupted, 3 leaks only.
    /// </summary>
    public int ExitCode => CheckErrors > 0 || Failure is not null ? 1 : Corruptions > 0 ? 2 : Leaks > 0 ? 3 : 0;
}

/// <summary>
/// Recomputes every host cluster's references from the metadata and compares them with the
/// stored refcounts, as <c>qemu-img check</c> does (formats.md §1.7; QEMU
/// <c>qcow2_check_refcounts</c>): header, refcount table and blocks, active L1/L2 and data,
/// compressed byte ranges, snapshot table and snapshot L1/L2 tables, bitmap directory, tables
/// and data. A snapshot table QEMU cannot read, or a table no file can reach, stops the check
/// there as it stops qemu-img's (<see cref="Qcow2CheckResult.Failure"/>). COPIED flags are checked against the stored refcounts afterwards, as
/// <c>check_oflag_copied</c> does, so the messages come in qemu-img's order.
/// </summary>
public static class Qcow2Check
{
    /// <exception cref="StorageException">The header itself is unreadable (then nothing can be checked).</exception>
    public static async ValueTask<Qcow2CheckResult> RunAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = HostFile.Open(path, readOnly: true);
        await using (file.ConfigureAwait(false))
        {
            var header = await ReadHeaderAsync(file, cancellationToken).ConfigureAwait(false);
            await CheckBitmapDirectoryAsync(file, header, cancellationToken).ConfigureAwait(false);
            await CheckBackingChainAsync(file, header, cancellationToken).ConfigureAwait(false);
            var audit = RefcountAudit.Create(file, header);
            if (!await audit.ReadSnapshotTableAsync(cancellationToken).ConfigureAwait(false))
            {
                return audit.Result() with { Path = path };
            }

            await audit.CountAsync(cancellationToken).ConfigureAwait(false);
            if (audit.Failure is not null)
            {
                return audit.Result() with { Path = path };
            }

            await audit.CompareAsync(Qcow2RepairMode.None, cancellationToken).ConfigureAwait(false);
            await audit.CheckCopiedFlagsAsync(Qcow2RepairMode.None, cancellationToken).ConfigureAwait(false);
            return audit.Result() with { Path = path };
        }
    }

    internal static async ValueTask<Qcow2Header> ReadHeaderAsync(HostFile file, CancellationToken cancellationToken)
    {
        var probe = new byte[Qcow2Header.ProbeLength];
        await file.ReadAsync(0, probe, cancellationToken).ConfigureAwait(false);
        var bits = Qcow2Header.ReadClusterBits(probe.AsSpan(0, (int)Math.Min(probe.Length, file.Length)), file.Path);
        var cluster0 = new byte[1 << bits];
        await file.ReadAsync(0, cluster0, cancellationToken).ConfigureAwait(false);
        return Qcow2Header.Parse(cluster0, file.Length, file.Path);
    }

    /// <summary>
    /// qemu-img check opens the image with its backing chain: a backing file that is missing,
    /// loops or cannot be opened fails the check ("Could not open backing file") before any
    /// counting, so an image that no reader can use is never called clean.
    /// </summary>
    internal static async ValueTask CheckBackingChainAsync(HostFile file, Qcow2Header header, CancellationToken cancellationToken)
    {
        if (header.BackingFile is null)
        {
            return;
        }

        var backing = await DiskImage.OpenBackingAsync(file.Path, header.BackingFile, header.BackingFormat, [file.Path], below: null, cancellationToken).ConfigureAwait(false);
        await backing.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// qemu-img check opens the image first, and opening loads the bitmap directory: a directory
    /// QEMU refuses ("Bitmap 'bc' doesn't satisfy the constraints", "Broken bitmap directory")
    /// fails the check before any counting, exactly as the same image fails to open here.
    /// </summary>
    internal static async ValueTask CheckBitmapDirectoryAsync(HostFile file, Qcow2Header header, CancellationToken cancellationToken)
    {
        // Without the autoclear bit the extension is stale and ignored (formats.md §2.1).
        if ((header.AutoclearFeatures & Qcow2Layout.AutoclearBitmaps) == 0 || header.FindExtension(Qcow2Layout.ExtensionBitmaps) is not { } payload)
        {
            return;
        }

        var extension = BitmapsExtension.Read(payload.Span, header.ClusterSize);
        var bytes = new byte[extension.DirectorySize];
        await file.ReadAsync(extension.DirectoryOffset, bytes, cancellationToken).ConfigureAwait(false);
        var virtualSize = DiskSize.FromQcow2Header(header.Size);
        try
        {
            // Then each consistent bitmap's table, as opening loads it (QEMU bitmap_table_load
            // with check_table_entry: "Could not read bitmap_table table from image").
            foreach (var entry in BitmapDirectory.Parse(bytes, extension, header.ClusterSize, virtualSize))
            {
                if (entry.Flags.HasFlag(BitmapEntryFlags.InUse))
                {
                    continue;
                }

                var expected = BitmapTable.ExpectedSize(virtualSize, entry.GranularityBits, header.ClusterSize);
                if (entry.TableSize != expected)
                {
                    throw new StorageException(StorageErrorReason.Corrupt, $"bitmap '{entry.Name}' (table at offset 0x{entry.TableOffset:x}): bitmap_table_size is {entry.TableSize}, the disk needs exactly {expected}");
                }

                var table = new byte[(long)entry.TableSize * BitmapTable.EntrySize];
                await file.ReadAsync(entry.TableOffset, table, cancellationToken).ConfigureAwait(false);
                _ = BitmapTable.Decode(table, entry.TableOffset, header.ClusterSize, entry.Name);
            }
        }
        catch (StorageException e)
        {
            throw new StorageException(e.Reason, $"{file.Path}: {e.Message}", e);
        }
    }
}
