using Microsoft.Extensions.Logging;
using Tidemark.Engine.State;
using Tidemark.Formats.Checkpoints;

namespace Tidemark.Engine.Checkpoints;

/// <summary>
/// Checkpoint creation on an inactive domain (Tidemark's addition to libvirt): the bitmaps are
/// added to the qcow2 files offline, as <c>qemu-img bitmap --add</c> adds them, under a
/// <see cref="CheckpointCreationRecord"/> so that a crash part way leaves either the checkpoint
/// with a bitmap on every disk it names, or no checkpoint and, after the next start, no bitmap
/// of it anywhere.
/// </summary>
public sealed partial class DomainCheckpoints
{
    /// <summary>
    /// The order, and what a kill after each step leaves: (1) every image opened (nothing
    /// changed yet but the IN_USE flags of the bitmaps already there, which QEMU sets the same
    /// way); (2) the record written; (3) the bitmaps added in memory and stored by closing the
    /// images one after another (some files have the bitmap; the next start removes it);
    /// (4) the metadata saved atomically (the checkpoint exists, every bitmap stored); (5) the
    /// record dropped. A failure in (3) or (4) removes the bitmaps again before it is reported.
    /// </summary>
    private async Task CreateOfflineAsync(CheckpointDefinition definition, IReadOnlyList<string> targets, CancellationToken cancellationToken)
    {
        if (!CheckpointCreationRecord.FitsFileName(_domain.Name))
        {
            // No record, no safe creation: the domain gets libvirt's answer for every inactive one.
            throw new EngineException(EngineErrorReason.CheckpointOfInactiveDomain, "cannot create checkpoint for inactive domain");
        }

        var name = definition.Name!;
        var offline = await OfflineImages.OpenAsync(_domain.Definition, targets, cancellationToken).ConfigureAwait(false);
        CheckpointCreationRecord record;
        try
        {
            foreach (var target in targets)
            {
                CheckQcow2(target, offline.Get(target)!.Value.Format);
            }

            record = await WriteRecordAsync(name, targets, cancellationToken).ConfigureAwait(false);
            try
            {
                await AddBitmapsAsync(targets.Select(t => (t, offline.Qcow2(t)!, _domain.Definition.DiskByTarget(t)?.SourcePath ?? t)), name, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                record.Complete();
                throw;
            }
        }
        catch
        {
            await offline.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        try
        {
            // Closing stores the bitmaps.
            await offline.DisposeAsync().ConfigureAwait(false);
            await SaveAsync(definition, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await RemoveStrayBitmapsAsync(record, CancellationToken.None).ConfigureAwait(false);
            throw;
        }

        record.Complete();
    }

    /// <summary>
    /// At the start after a crash: finishes a creation that <paramref name="record"/> says was
    /// cut short. The checkpoint exists (the metadata was saved), or every bitmap of it the
    /// record's disks hold is removed. Removal that fails (an image locked by another process)
    /// is logged and left to the next start.
    /// </summary>
    internal async Task FinishInterruptedCreationAsync(CheckpointCreationRecord record, CancellationToken cancellationToken)
    {
        if (Tree.Find(record.Checkpoint) is not null)
        {
            record.Complete();
            return;
        }

        await RemoveStrayBitmapsAsync(record, cancellationToken).ConfigureAwait(false);
    }

    private async Task<CheckpointCreationRecord> WriteRecordAsync(string name, IReadOnlyList<string> targets, CancellationToken cancellationToken)
    {
        try
        {
            return await CheckpointCreationRecord.WriteAsync(_domain.Store, _domain.Name, name, targets, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EngineException(EngineErrorReason.StateWriteFailed, $"unable to save metadata for checkpoint {name}", e);
        }
    }

    // Removes the record's bitmaps from its disks (a disk gone from the definition is skipped),
    // then the record; on failure the record stays for the next start.
    private async Task RemoveStrayBitmapsAsync(CheckpointCreationRecord record, CancellationToken cancellationToken)
    {
        try
        {
            var offline = await OfflineImages.OpenAsync(_domain.Definition, record.Targets, cancellationToken).ConfigureAwait(false);
            await using (offline.ConfigureAwait(false))
            {
                foreach (var target in record.Targets)
                {
                    if (offline.Qcow2(target) is { } image && image.Bitmaps.Find(record.Checkpoint) is not null)
                    {
                        await image.Bitmaps.RemoveAsync(record.Checkpoint, cancellationToken).ConfigureAwait(false);
                        _domain.Logger.LogWarning("domain {Domain}: removed bitmap '{Bitmap}' of disk '{Disk}', left by a creation of checkpoint {Checkpoint} that did not complete", _domain.Name, record.Checkpoint, target, record.Checkpoint);
                    }
                }
            }

            record.Complete();
        }
        catch (Exception e) when (e is EngineException or Storage.StorageException or IOException)
        {
            _domain.Logger.LogError("domain {Domain}: cannot remove the bitmaps of checkpoint {Checkpoint}, whose creation did not complete: {Error}; trying again at the next start", _domain.Name, record.Checkpoint, e.Message);
        }
    }
}
