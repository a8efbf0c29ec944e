using System.Buffers.Binary;

namespace Tidemark.Storage.Qcow2;

/// <summary>
/// <c>qemu-img check -r leaks|all</c> on a qcow2 file (QEMU <c>qcow2_co_check_locked</c> and
/// <c>qcow2_check_refcounts</c> with a fix mode): refcounts set to the references found, COPIED
/// flags corrected, the refcount structure rebuilt when it cannot be trusted, the dirty bit
/// cleared as QEMU clears it on close, and the corrupt bit once nothing is left wrong.
/// </summary>
/// <remarks>
/// Crash safety, pass by pass: in-place refcount and flag repairs are each safe on their own (see
/// <see cref="RefcountAudit"/>); a rebuild writes the new blocks and table into clusters nothing
/// references and flushes before the header points at them, so a crash leaves the old structure
/// or the new one with the old one leaked. The dirty bit is cleared last, after a flush.
/// </remarks>
public static class Qcow2Repair
{
    /// <summary>
    /// Checks and repairs <paramref name="path"/>. The result counts what was left and what was
    /// fixed (<see cref="Qcow2CheckResult.LeaksFixed"/>, <see cref="Qcow2CheckResult.CorruptionsFixed"/>);
    /// qemu-img then checks the image again, which <see cref="Qcow2Check.RunAsync"/> does.
    /// </summary>
    /// <exception cref="StorageException">The header is unreadable, the image is in use (<see cref="StorageErrorReason.Locked"/>), or its bitmaps or backing chain cannot be opened.</exception>
    public static async ValueTask<Qcow2CheckResult> RunAsync(string path, Qcow2RepairMode mode, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = HostFile.Open(path, readOnly: mode == Qcow2RepairMode.None);
        await using (file.ConfigureAwait(false))
        {
            var header = await Qcow2Check.ReadHeaderAsync(file, cancellationToken).ConfigureAwait(false);
            await Qcow2Check.CheckBitmapDirectoryAsync(file, header, cancellationToken).ConfigureAwait(false);
            await Qcow2Check.CheckBackingChainAsync(file, header, cancellationToken).ConfigureAwait(false);
            var messages = new List<string>();
            var audit = RefcountAudit.Create(file, header, messages);

            // Validate before mutate: a check that cannot complete has no counts to repair from,
            // so nothing is written, not even the header's dirty bit. (qemu-img check -r all
            // drops an oversized snapshot table's extra data instead; Tidemark does not rewrite
            // snapshot tables.)
            if (!await audit.ReadSnapshotTableAsync(cancellationToken).ConfigureAwait(false))
            {
                return audit.Result() with { Path = path };
            }

            await audit.CountAsync(cancellationToken).ConfigureAwait(false);
            if (audit.Failure is not null)
            {
                return audit.Result() with { Path = path };
            }

            var preCompare = audit.Counts;
            await audit.CompareAsync(Qcow2RepairMode.None, cancellationToken).ConfigureAwait(false);
            if (audit.NeedsRebuild && mode.HasFlag(Qcow2RepairMode.Errors))
            {
                audit = await RebuildAsync(file, audit, mode, messages, cancellationToken).ConfigureAwait(false);
                header = await Qcow2Check.ReadHeaderAsync(file, cancellationToken).ConfigureAwait(false);
            }
            else if (mode != Qcow2RepairMode.None)
            {
                if (audit.NeedsRebuild)
                {
                    // qcow2_check_refcounts gives up with EIO, and qemu-img reports only that.
                    audit.AddCheckError("ERROR need to rebuild refcount structures");
                    await MarkCleanAsync(file, header, consistent: false, cancellationToken).ConfigureAwait(false);
                    return audit.Result() with { Path = path, Failure = "Input/output error" };
                }

                if (audit.Leaks > 0 || audit.Corruptions > 0)
                {
                    audit.Counts = preCompare;
                    await audit.CompareAsync(mode, cancellationToken).ConfigureAwait(false);
                }
            }

            await audit.CheckCopiedFlagsAsync(mode, cancellationToken).ConfigureAwait(false);
            if (mode != Qcow2RepairMode.None)
            {
                await MarkCleanAsync(file, header, consistent: audit.CheckErrors == 0 && audit.Corruptions == 0, cancellationToken).ConfigureAwait(false);
            }

            return audit.Result() with { Path = path };
        }
    }

    /// <summary>
    /// The rebuild branch of qcow2_check_refcounts: a new structure from the counted references,
    /// a recount, the old structure's clusters freed as leaks, and the fixed counts taken as the
    /// difference between before and after.
    /// </summary>
    private static async ValueTask<RefcountAudit> RebuildAsync(HostFile file, RefcountAudit audit, Qcow2RepairMode mode, List<string> messages, CancellationToken cancellationToken)
    {
        var old = audit.Counts;
        messages.Add("Rebuilding refcount structure");
        var header = await Qcow2Check.ReadHeaderAsync(file, cancellationToken).ConfigureAwait(false);
        await RefcountRebuild.RunAsync(file, header, audit.References.ToArray(), cancellationToken).ConfigureAwait(false);
        header = await Qcow2Check.ReadHeaderAsync(file, cancellationToken).ConfigureAwait(false);
        var fresh = RefcountAudit.Create(file, header, messages);
        fresh.Counts = (0, 0, old.CheckErrors);
        await fresh.CountAsync(cancellationToken).ConfigureAwait(false);
        var freshLeaks = 0L;
        if (mode.HasFlag(Qcow2RepairMode.Leaks))
        {
            // The old structure is now unreferenced: free it. Leaks this cannot fix were made by
            // the rebuild itself and are reported as such.
            var saved = fresh.Counts;
            fresh.Counts = (0, 0, 0);
            await fresh.CompareAsync(Qcow2RepairMode.Leaks, cancellationToken).ConfigureAwait(false);
            if (fresh.NeedsRebuild)
            {
                messages.Add("ERROR rebuilt refcount structure is still broken");
            }

            freshLeaks = fresh.Leaks;
            fresh.Counts = saved;
        }

        fresh.LeaksFixed = Math.Max(0, old.Leaks - fresh.Leaks);
        fresh.CorruptionsFixed = Math.Max(0, old.Corruptions - fresh.Corruptions);
        var counts = fresh.Counts;
        fresh.Counts = (counts.Corruptions, counts.Leaks + freshLeaks, counts.CheckErrors);
        return fresh;
    }

    /// <summary>
    /// The dirty bit (lazy refcounts) is cleared as QEMU clears it when it closes an image it
    /// opened for writing (qcow2_inactivate, qcow2_mark_clean), whatever the check found; the
    /// corrupt bit only when nothing is left wrong (qcow2_mark_consistent). One header write,
    /// after everything repaired is durable.
    /// </summary>
    private static async ValueTask MarkCleanAsync(HostFile file, Qcow2Header header, bool consistent, CancellationToken cancellationToken)
    {
        var bits = Qcow2Layout.IncompatDirty | (consistent ? Qcow2Layout.IncompatCorrupt : 0);
        if (header.Version < 3 || (header.IncompatibleFeatures & bits) == 0)
        {
            return;
        }

        await file.FlushAsync(cancellationToken).ConfigureAwait(false);
        var field = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(field, header.IncompatibleFeatures & ~bits);
        await file.WriteAsync(Qcow2Layout.IncompatibleFeaturesOffset, field, cancellationToken).ConfigureAwait(false);
        await file.FlushAsync(cancellationToken).ConfigureAwait(false);
    }
}
