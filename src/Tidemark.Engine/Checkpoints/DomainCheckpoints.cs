using System.Collections.Immutable;
using System.Text;
using Microsoft.Extensions.Logging;
using Tidemark.Engine.Domains;
using Tidemark.Engine.State;
using Tidemark.Formats.Checkpoints;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;
using Tidemark.Storage.Qcow2.Bitmaps;

namespace Tidemark.Engine.Checkpoints;

/// <summary>
/// A domain's checkpoints: libvirt's checkpoint API (spec §4.2, §6.1–§6.6) on Tidemark's own
/// disks. A checkpoint owns one persistent, always-recording qcow2 bitmap per disk, named after
/// it; creating one adds those bitmaps in one instant across the domain's disks; deleting one
/// removes them, never merging them anywhere. Metadata lives in
/// <c>checkpoint/&lt;domain&gt;/&lt;name&gt;.xml</c> with the embedded domain.
/// </summary>
/// <remarks>
/// Beyond libvirt, an inactive domain's checkpoints can be created and deleted too: the bitmaps
/// are added to or removed from the qcow2 files offline, as <c>qemu-img bitmap</c> would.
/// Every method takes the domain's lock for its whole length.
/// </remarks>
public sealed partial class DomainCheckpoints
{
    // qemu_checkpoint.c's qemuCheckpointCreateXML makes the virCheckFlags check, not the
    // driver entry point (libvirtd 9.0 and 11.3 name it in the error).
    private const string CreateFunction = "qemuCheckpointCreateXML";

    private readonly Domain _domain;

    internal DomainCheckpoints(Domain domain, CheckpointTree tree)
    {
        _domain = domain;
        Tree = tree;
    }

    /// <summary>How many checkpoints the domain has.</summary>
    public int Count => Tree.Count;

    /// <summary>
    /// The current checkpoint's name (the parent the next created checkpoint gets), or null.
    /// libvirt has no public call for it (spec §1); the daemon does not need it.
    /// </summary>
    public string? CurrentName => Tree.Current?.Name;

    internal CheckpointTree Tree { get; }

    /// <summary>
    /// <c>virDomainCheckpointCreateXML</c>: creates a checkpoint (its bitmaps start recording
    /// in one instant on every disk it covers, spec §6.2), or with
    /// <see cref="CheckpointCreateFlags.Redefine"/> puts back or updates metadata (spec §2.5).
    /// Returns the checkpoint's name.
    /// </summary>
    /// <exception cref="Formats.DocumentException">The document cannot be read, breaks the schema, or does not fit the domain.</exception>
    /// <exception cref="EngineException">Bad flags, a duplicate name, a bitmap name other than the checkpoint's, a disk that is not qcow2,
    /// a missing parent or a cycle, a missing or broken bitmap (validate), images locked or unusable, metadata that cannot be written.</exception>
    public async Task<string> CreateAsync(string xml, CheckpointCreateFlags flags = CheckpointCreateFlags.None, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(xml);
        var redefine = flags.HasFlag(CheckpointCreateFlags.Redefine);
        Flags.Exclusive(redefine, "VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE", flags.HasFlag(CheckpointCreateFlags.Quiesce), "VIR_DOMAIN_CHECKPOINT_CREATE_QUIESCE");
        Flags.Requires(flags.HasFlag(CheckpointCreateFlags.RedefineValidate), "VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE", redefine, "VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE");

        // The qemu driver refuses QUIESCE: it has no guest agent to freeze file systems with.
        Flags.Check(flags, CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, CreateFunction);
        using var held = await _domain.LockAsync(cancellationToken).ConfigureAwait(false);
        return redefine
            ? await RedefineAsync(xml, flags.HasFlag(CheckpointCreateFlags.RedefineValidate), cancellationToken).ConfigureAwait(false)
            : await CreateNewAsync(xml, cancellationToken).ConfigureAwait(false);
    }

    /// <summary><c>virDomainCheckpointLookupByName</c>: the checkpoint's definition as stored.</summary>
    /// <exception cref="EngineException">"no domain checkpoint with matching name '%s'".</exception>
    public async Task<CheckpointDefinition> LookupAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        using var held = await _domain.LockAsync(cancellationToken).ConfigureAwait(false);
        return Tree.Get(name).Definition;
    }

    /// <summary>
    /// <c>virDomainCheckpointGetParent</c>: the parent's name, as the checkpoint's definition
    /// names it. Like qemuDomainCheckpointGetParent, that is the stored name even when that
    /// parent is missing (its file lost): the tree then treats the checkpoint as a root, and
    /// the relations as inconsistent (§1), but the checkpoint still says whose child it was.
    /// </summary>
    /// <exception cref="EngineException">An unknown checkpoint, or "checkpoint '%s' does not have a parent" (NO_DOMAIN_CHECKPOINT, which virsh relies on).</exception>
    public async Task<string> GetParentAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        using var held = await _domain.LockAsync(cancellationToken).ConfigureAwait(false);
        return Tree.Get(name).Definition.Parent
               ?? throw new EngineException(EngineErrorReason.NoParent, $"checkpoint '{name}' does not have a parent");
    }

    /// <summary>
    /// <c>virDomainListAllCheckpoints</c> (spec §4.3): names of every checkpoint or the roots,
    /// filtered by leaves, always in topological order (parents first).
    /// </summary>
    /// <exception cref="EngineException">Unknown flags.</exception>
    public async Task<IReadOnlyList<string>> ListAsync(CheckpointListFlags flags = CheckpointListFlags.None, CancellationToken cancellationToken = default)
    {
        Flags.Check(flags, CheckpointListFlags.Roots | CheckpointListFlags.Topological | CheckpointListFlags.Leaves | CheckpointListFlags.NoLeaves, "qemuDomainListAllCheckpoints");
        using var held = await _domain.LockAsync(cancellationToken).ConfigureAwait(false);
        return [.. Tree.List(null, flags).Select(c => c.Name)];
    }

    /// <summary>
    /// <c>virDomainCheckpointListAllChildren</c> (spec §4.3): names of the children, or with
    /// <see cref="CheckpointListFlags.Descendants"/> the whole subtree, filtered by leaves.
    /// </summary>
    /// <exception cref="EngineException">Unknown flags, or an unknown checkpoint.</exception>
    public async Task<IReadOnlyList<string>> ListChildrenAsync(string name, CheckpointListFlags flags = CheckpointListFlags.None, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        Flags.Check(flags, CheckpointListFlags.Descendants | CheckpointListFlags.Topological | CheckpointListFlags.Leaves | CheckpointListFlags.NoLeaves, "qemuDomainCheckpointListAllChildren");
        using var held = await _domain.LockAsync(cancellationToken).ConfigureAwait(false);
        return [.. Tree.List(Tree.Get(name), flags).Select(c => c.Name)];
    }

    /// <summary>
    /// <c>virDomainCheckpointGetXMLDesc</c> (spec §2.4, §6.5). With
    /// <see cref="CheckpointFormatFlags.Size"/>, each disk whose bitmap chain is valid gets the
    /// bytes dirtied since the checkpoint (its bitmap merged across the chain); that needs a
    /// running domain.
    /// </summary>
    /// <exception cref="EngineException">Unknown flags, an unknown checkpoint, or SIZE on a domain that is not running.</exception>
    public async Task<string> GetXmlAsync(string name, CheckpointFormatFlags flags = CheckpointFormatFlags.None, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        Flags.Check(flags, CheckpointFormatFlags.Secure | CheckpointFormatFlags.NoDomain | CheckpointFormatFlags.Size, "qemuCheckpointGetXMLDesc");
        using var held = await _domain.LockAsync(cancellationToken).ConfigureAwait(false);
        var checkpoint = Tree.Get(name);
        var definition = checkpoint.Definition;
        if (flags.HasFlag(CheckpointFormatFlags.Size))
        {
            var running = _domain.Running ?? throw Domain.NotRunning();

            // Spec §6.5: the chain of the bitmap named after the checkpoint; disks without a
            // valid chain get no size and no error.
            var disks = definition.Disks
                .Select(d => d.Type == CheckpointType.Bitmap && running.DiskByTarget(d.Name)?.DirtyBytes(checkpoint.Name) is { } bytes
                    ? d with { Size = (ulong)bytes }
                    : d)
                .ToList();
            definition = definition with { Disks = disks };
        }

        return CheckpointFormatter.Format(definition, flags);
    }

    private async Task<string> CreateNewAsync(string xml, CancellationToken cancellationToken)
    {
        var now = _domain.Clock.GetUtcNow().ToUnixTimeSeconds();
        var aligned = CheckpointAligner.Align(CheckpointParser.Parse(xml, CheckpointParseMode.Create, now), _domain.Definition);
        var name = aligned.Name!;
        var bitmapDisks = aligned.Disks.Where(d => d.Type == CheckpointType.Bitmap).ToList();
        foreach (var disk in bitmapDisks)
        {
            if (disk.Bitmap != name)
            {
                throw new EngineException(EngineErrorReason.BitmapNameMismatch, $"bitmap for disk '{disk.Name}' must match checkpoint name '{name}'");
            }
        }

        if (Tree.Find(name) is not null)
        {
            throw new EngineException(EngineErrorReason.CheckpointExists, $"domain moment {name} already exists");
        }

        var targets = bitmapDisks.Select(d => d.Name).ToList();
        var definition = aligned with { Parent = Tree.Current?.Name, Domain = _domain.Definition };
        if (_domain.Running is { } running)
        {
            var images = targets.Select(t => (Target: t, Disk: running.DiskByTarget(t)!)).ToList();
            foreach (var (target, disk) in images)
            {
                TransientDisks.RefuseBlockJob(_domain.Definition, target);
                CheckQcow2(target, disk.Format);
            }

            // The instant (design.md): no guest write lands between the bitmaps of two disks,
            // and writes in flight complete first, in the previous interval.
            using (await running.Barrier.CloseAsync(cancellationToken).ConfigureAwait(false))
            {
                await AddBitmapsAsync(images.Select(i => (i.Target, (Qcow2Image)i.Disk.LiveImage, TransactionNode(_domain.DiskNodeIndexes, i.Target))), name, cancellationToken).ConfigureAwait(false);
            }

            try
            {
                await SaveAsync(definition, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                // No checkpoint, so no bitmap of it: the images would store them at close.
                await RemoveBitmapsAsync(aligned, running).ConfigureAwait(false);
                throw;
            }
        }
        else
        {
            foreach (var target in targets)
            {
                TransientDisks.RefuseBlockJob(_domain.Definition, target);
            }

            await CreateOfflineAsync(definition, targets, cancellationToken).ConfigureAwait(false);
        }

        Tree.Current = Tree.Add(definition);
        _domain.Logger.LogInformation("domain {Domain}: checkpoint {Checkpoint} created", _domain.Name, name);
        return name;
    }

    private async Task<string> RedefineAsync(string xml, bool validate, CancellationToken cancellationToken)
    {
        var parsed = CheckpointParser.Parse(xml, CheckpointParseMode.Redefine);
        CheckpointRedefinition.CheckNotOwnParent(parsed);
        Tree.CheckRedefinition(parsed);
        CheckpointDefinition definition;
        if (parsed.Domain is not null)
        {
            CheckpointRedefinition.CheckDomainUuid(parsed, _domain.Uuid);
            definition = CheckpointAligner.Align(parsed, parsed.Domain);
        }
        else
        {
            definition = CheckpointAligner.AssignBitmapNames(parsed);
        }

        var name = definition.Name!;
        var current = Tree.Current;
        var makeCurrent = current is null || current.Name == definition.Parent || current.Name == name;
        if (validate)
        {
            var running = _domain.Running ?? throw Domain.NotRunning();

            // Spec §2.5 step 5: the chain of the bitmap named after the checkpoint, on every
            // bitmap disk the VM still has.
            foreach (var disk in definition.Disks.Where(d => d.Type == CheckpointType.Bitmap))
            {
                if (running.DiskByTarget(disk.Name) is { } runningDisk && !runningDisk.HasValidBitmap(name))
                {
                    throw Disks.RunningDisk.BrokenBitmap(name, disk.Name);
                }
            }
        }

        await SaveAsync(definition, cancellationToken).ConfigureAwait(false);
        var checkpoint = Tree.Find(name);
        if (checkpoint is null)
        {
            checkpoint = Tree.Add(definition);
        }
        else
        {
            Tree.Replace(checkpoint, definition);
        }

        if (makeCurrent)
        {
            Tree.Current = checkpoint;
        }

        return name;
    }

    private static void CheckQcow2(string target, ImageFormat format)
    {
        if (format != ImageFormat.Qcow2)
        {
            throw new EngineException(EngineErrorReason.CheckpointStorageType, $"checkpoint for disk {target} unsupported for storage type {format.ToName()}");
        }
    }

    /// <summary>
    /// The node libvirt gives a running disk's top image (<c>libvirt-N-format</c>, N its index),
    /// which QEMU names when it refuses a bitmap there.
    /// </summary>
    private static string TransactionNode(IReadOnlyDictionary<string, ImmutableArray<uint>> nodeIndexes, string target) =>
        nodeIndexes.TryGetValue(target, out var indexes) && !indexes.IsDefaultOrEmpty ? $"libvirt-{indexes[0]}-format" : target;

    /// <summary>
    /// Adds the bitmap to every image, or to none: a failure removes the ones already added.
    /// QEMU prepares libvirt's one transaction of block-dirty-bitmap-add (qemuCheckpointCreate)
    /// disk by disk and refuses it whole at the first disk that already has a bitmap of the
    /// name, or cannot store one of that name (block_dirty_bitmap_add,
    /// qcow2_co_can_store_new_dirty_bitmap), so these are checked for every disk before any
    /// bitmap is added; clients see QEMU's words through libvirt's monitor error, naming
    /// <paramref name="images"/>' nodes (an inactive domain's are its images' paths).
    /// </summary>
    private static async Task AddBitmapsAsync(IEnumerable<(string Target, Qcow2Image Image, string Node)> images, string name, CancellationToken cancellationToken)
    {
        var all = images.ToList();
        foreach (var (_, image, node) in all)
        {
            if (image.Bitmaps.Find(name) is not null)
            {
                throw new EngineException(EngineErrorReason.BitmapExists, $"unable to execute QEMU command 'transaction': Bitmap already exists: {name}");
            }

            if (Encoding.UTF8.GetByteCount(name) > Qcow2BitmapSet.MaxNameBytes)
            {
                throw new EngineException(EngineErrorReason.BitmapNameTooLong, $"unable to execute QEMU command 'transaction': Can't make bitmap '{name}' persistent in '{node}': Name length exceeds maximum ({Qcow2BitmapSet.MaxNameBytes} characters)");
            }
        }

        var added = new List<Qcow2Image>();
        try
        {
            foreach (var (target, image, _) in all)
            {
                try
                {
                    await image.Bitmaps.AddAsync(name, cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                catch (StorageException e)
                {
                    throw Disks.DiskImages.Failure($"cannot add bitmap '{name}' to disk '{target}'", e);
                }

                added.Add(image);
            }
        }
        catch
        {
            foreach (var image in added)
            {
                await image.Bitmaps.RemoveAsync(name, CancellationToken.None).ConfigureAwait(false);
            }

            throw;
        }
    }

    private async Task SaveAsync(CheckpointDefinition definition, CancellationToken cancellationToken)
    {
        try
        {
            // Stored metadata always carries the secure data and the domain (spec §2.4), below
            // the edit warning libvirt writes (spec §6.1; qemuCheckpointWriteMetadata), so a
            // file moved between libvirt and Tidemark reads the same on both sides.
            await AtomicFile.WriteLibvirtFileAsync(
                _domain.Store.CheckpointFile(_domain.Name, definition.Name!),
                EditWarning.Checkpoint + CheckpointFormatter.Format(definition, CheckpointFormatFlags.Secure),
                cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EngineException(EngineErrorReason.StateWriteFailed, $"unable to save metadata for checkpoint {definition.Name}", e);
        }
    }
}
