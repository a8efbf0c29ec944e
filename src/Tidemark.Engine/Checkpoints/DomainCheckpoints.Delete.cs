using Microsoft.Extensions.Logging;
using Tidemark.Engine.Disks;
using Tidemark.Engine.State;
using Tidemark.Formats.Checkpoints;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Engine.Checkpoints;

public sealed partial class DomainCheckpoints
{
    /// <summary>
    /// <c>virDomainCheckpointDelete</c> (spec §6.4): removes the checkpoint's bitmaps (never
    /// merging them into anything) and its metadata. Its children move under its parent.
    /// <see cref="CheckpointDeleteFlags.Children"/> deletes its whole subtree with it,
    /// <see cref="CheckpointDeleteFlags.ChildrenOnly"/> the subtree alone, and
    /// <see cref="CheckpointDeleteFlags.MetadataOnly"/> leaves every bitmap in the images.
    /// </summary>
    /// <remarks>
    /// The bitmap is removed from every layer of each disk's chain that holds it (an external
    /// snapshot leaves a copy in the layer below): layers below the top are open read-only and
    /// are reopened read-write for the removal only, as libvirt has QEMU do. The lowest layer
    /// goes first and the top last, so a failure part way leaves an unbroken run from the top
    /// (spec §6.6), never a bitmap below a gap. With children, an error on one descendant
    /// does not stop the others; the first is rethrown and the checkpoint itself is kept.
    /// </remarks>
    /// <exception cref="EngineException">Bad flags, an unknown checkpoint, a disk entry without a bitmap name,
    /// a bitmap found in no layer of its disk, images locked or unusable.</exception>
    public async Task DeleteAsync(string name, CheckpointDeleteFlags flags = CheckpointDeleteFlags.None, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        Flags.Exclusive(
            flags.HasFlag(CheckpointDeleteFlags.Children),
            "VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN",
            flags.HasFlag(CheckpointDeleteFlags.ChildrenOnly),
            "VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN_ONLY");
        Flags.Check(flags, CheckpointDeleteFlags.Children | CheckpointDeleteFlags.MetadataOnly | CheckpointDeleteFlags.ChildrenOnly, "qemuCheckpointDelete");
        using var held = await _domain.LockAsync(cancellationToken).ConfigureAwait(false);
        var checkpoint = Tree.Get(name);
        var metadataOnly = flags.HasFlag(CheckpointDeleteFlags.MetadataOnly);
        var withChildren = flags.HasFlag(CheckpointDeleteFlags.Children) || flags.HasFlag(CheckpointDeleteFlags.ChildrenOnly);
        var doomed = withChildren ? Tree.Descendants(checkpoint).ToList() : [];
        if (!flags.HasFlag(CheckpointDeleteFlags.ChildrenOnly))
        {
            doomed.Add(checkpoint);
        }

        OfflineImages? offline = null;
        if (!metadataOnly && _domain.Running is null)
        {
            offline = await OfflineImages.OpenAsync(
                _domain.Definition,
                doomed.SelectMany(c => c.Definition.Disks).Where(d => d.Type == CheckpointType.Bitmap).Select(d => d.Name),
                cancellationToken).ConfigureAwait(false);
        }

        try
        {
            if (withChildren)
            {
                await DiscardDescendantsAsync(checkpoint, metadataOnly, offline, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                // Spec §6.4 step 3: the children move under the grandparent.
                foreach (var child in checkpoint.Children.ToList())
                {
                    Tree.Reparent(child, checkpoint.Parent);
                    await SaveAsync(child.Definition, cancellationToken).ConfigureAwait(false);
                }
            }

            if (!flags.HasFlag(CheckpointDeleteFlags.ChildrenOnly))
            {
                await DiscardAsync(checkpoint, metadataOnly, offline, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            if (offline is not null)
            {
                await offline.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    // Every descendant, parents first, each one's bitmaps removed; an error does not stop the
    // others, and the first is rethrown before the checkpoint itself is touched.
    private async Task DiscardDescendantsAsync(Checkpoint checkpoint, bool metadataOnly, OfflineImages? offline, CancellationToken cancellationToken)
    {
        var current = Tree.Current;
        var descendants = Tree.Descendants(checkpoint).ToList();
        var currentAmongThem = current is not null && descendants.Contains(current);
        Exception? first = null;

        // Leaves first, so that every checkpoint removed from the tree has no children left.
        for (var i = descendants.Count - 1; i >= 0; i--)
        {
            try
            {
                await DiscardAsync(descendants[i], metadataOnly, offline, cancellationToken).ConfigureAwait(false);
            }
            catch (EngineException e)
            {
                first ??= e;
            }
        }

        if (currentAmongThem)
        {
            Tree.Current = checkpoint;
        }

        if (first is not null)
        {
            throw first;
        }
    }

    // libvirt's discard of one checkpoint (spec §6.4): its bitmaps, then current, its file and
    // its place in the tree.
    private async Task DiscardAsync(Checkpoint checkpoint, bool metadataOnly, OfflineImages? offline, CancellationToken cancellationToken)
    {
        if (!metadataOnly)
        {
            await RemoveBitmapsAsync(checkpoint, offline, cancellationToken).ConfigureAwait(false);
        }

        if (Tree.Current == checkpoint)
        {
            Tree.Current = checkpoint.Parent;
        }

        // The file goes before the tree entry: a crash in between leaves metadata for a
        // checkpoint whose bitmaps are gone, which redefine-validate and incrementals report
        // as missing, never a bitmap without metadata that nothing would clean up.
        try
        {
            AtomicFile.Delete(_domain.Store.CheckpointFile(_domain.Name, checkpoint.Name));
        }
        catch (IOException e)
        {
            _domain.Logger.LogWarning("cannot remove metadata of checkpoint {Checkpoint}: {Error}", checkpoint.Name, e.Message);
        }

        Tree.Remove(checkpoint);

        _domain.Logger.LogInformation("domain {Domain}: checkpoint {Checkpoint} deleted", _domain.Name, checkpoint.Name);
    }

    private async Task RemoveBitmapsAsync(Checkpoint checkpoint, OfflineImages? offline, CancellationToken cancellationToken)
    {
        foreach (var disk in checkpoint.Definition.Disks.Where(d => d.Type == CheckpointType.Bitmap))
        {
            IBlockImage? top = _domain.Running is { } running
                ? running.DiskByTarget(disk.Name)?.LiveImage
                : offline?.Get(disk.Name)?.Image;
            if (top is null)
            {
                // The disk is no longer part of the VM (spec §6.4: unplugged disks are skipped).
                continue;
            }

            var bitmap = disk.Bitmap
                ?? throw new EngineException(EngineErrorReason.MissingBitmapName, $"missing bitmap name for disk '{disk.Name}' of checkpoint '{checkpoint.Name}'");
            var layers = BitmapChain.Layers(top);
            if (!layers.Any(l => (l as Qcow2Image)?.Bitmaps.Find(bitmap) is not null))
            {
                throw new EngineException(EngineErrorReason.BitmapNotInChain, $"bitmap '{bitmap}' not found in backing chain of '{disk.Name}'");
            }

            foreach (var layer in layers.OfType<Qcow2Image>().Where(l => l.Bitmaps.Find(bitmap) is not null).Reverse())
            {
                try
                {
                    if (layer.IsReadOnly)
                    {
                        await layer.RemoveBitmapReopeningAsync(bitmap, cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        await layer.Bitmaps.RemoveAsync(bitmap, cancellationToken).ConfigureAwait(false);
                    }
                }
                catch (StorageException e)
                {
                    throw DiskImages.Failure($"cannot remove bitmap '{bitmap}' from '{layer.Path}' of disk '{disk.Name}'", e);
                }
            }
        }
    }
}
