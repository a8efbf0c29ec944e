using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using Tidemark.Engine.Disks;
using Tidemark.Formats.Checkpoints;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Engine.Checkpoints;

/// <summary>
/// The checkpoint a backup creates in the same instant as its point in time (spec §6.7 step 7):
/// the create steps of §6.2 split in three, so that the domain's backup begin runs the bitmap
/// additions under the barrier it holds closed for the job. The caller holds the domain's lock.
/// </summary>
public sealed partial class DomainCheckpoints
{
    /// <summary>
    /// Parses and aligns a checkpoint to create with a backup, and makes the checks of §6.2
    /// (bitmap names, duplicate name, qcow2 disks) before anything changes.
    /// </summary>
    internal CheckpointDefinition PrepareWithBackup(CheckpointDefinition parsed, RunningDomain running)
    {
        var aligned = CheckpointAligner.Align(parsed, _domain.Definition);
        var name = aligned.Name!;
        foreach (var disk in aligned.Disks.Where(d => d.Type == CheckpointType.Bitmap))
        {
            if (disk.Bitmap != name)
            {
                throw new EngineException(EngineErrorReason.BitmapNameMismatch, $"bitmap for disk '{disk.Name}' must match checkpoint name '{name}'");
            }

            CheckQcow2(disk.Name, running.DiskByTarget(disk.Name)!.Format);
        }

        if (Tree.Find(name) is not null)
        {
            throw new EngineException(EngineErrorReason.CheckpointExists, $"domain moment {name} already exists");
        }

        return aligned;
    }

    /// <summary>Adds the checkpoint's bitmaps while <paramref name="closure"/> holds the domain's barrier closed: all of them or none.</summary>
    /// <param name="nodeIndexes">The running disks' node indexes (<see cref="Domains.Domain.DiskNodeIndexes"/>), for QEMU's words in a refusal.</param>
    internal static Task AddBitmapsWithinInstantAsync(CheckpointDefinition aligned, RunningDomain running, IReadOnlyDictionary<string, ImmutableArray<uint>> nodeIndexes, BarrierClosure closure, CancellationToken cancellationToken)
    {
        if (closure.Barrier is null || !closure.Barrier.IsClosed)
        {
            throw new InvalidOperationException("a checkpoint's bitmaps are added only while the domain's barrier is held closed");
        }

        var images = aligned.Disks
            .Where(d => d.Type == CheckpointType.Bitmap)
            .Select(d => (d.Name, (Qcow2Image)running.DiskByTarget(d.Name)!.LiveImage, TransactionNode(nodeIndexes, d.Name)));
        return AddBitmapsAsync(images, aligned.Name!, cancellationToken);
    }

    /// <summary>Takes back the bitmaps of a checkpoint whose backup could not begin.</summary>
    internal static async Task RemoveBitmapsAsync(CheckpointDefinition aligned, RunningDomain running)
    {
        foreach (var disk in aligned.Disks.Where(d => d.Type == CheckpointType.Bitmap))
        {
            if (running.DiskByTarget(disk.Name)?.LiveImage is Qcow2Image image && image.Bitmaps.Find(aligned.Name!) is not null)
            {
                await image.Bitmaps.RemoveAsync(aligned.Name!, CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Saves the metadata of a checkpoint whose bitmaps exist, and makes it current.</summary>
    internal async Task CommitAsync(CheckpointDefinition aligned, CancellationToken cancellationToken)
    {
        var definition = aligned with { Parent = Tree.Current?.Name, Domain = _domain.Definition };
        await SaveAsync(definition, cancellationToken).ConfigureAwait(false);
        Tree.Current = Tree.Add(definition);
        _domain.Logger.LogInformation("domain {Domain}: checkpoint {Checkpoint} created with a backup", _domain.Name, definition.Name);
    }

    /// <summary>True when the domain's metadata has a checkpoint named <paramref name="name"/>.</summary>
    internal bool Exists(string name) => Tree.Find(name) is not null;
}
