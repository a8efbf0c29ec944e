using Tidemark.Engine.Checkpoints;
using Tidemark.Formats.Checkpoints;
using Tidemark.Remote.Protocol;

namespace Tidemark.Daemon;

/// <summary>The checkpoint procedures (libvirt-rpc.md §5, 411–417) over the domain's checkpoint tree.</summary>
internal sealed partial class EngineHypervisor
{
    public ValueTask<RemoteCheckpoint> CreateCheckpointAsync(RemoteDomain domain, string xml, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        var found = Find(domain);
        var name = await found.Checkpoints.CreateAsync(xml, (CheckpointCreateFlags)flags, cancellationToken).ConfigureAwait(false);
        return new RemoteCheckpoint(name, Ref(found));
    });

    public ValueTask<string> GetCheckpointXmlAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken) =>
        CallAsync(() => Find(checkpoint.Domain).Checkpoints.GetXmlAsync(checkpoint.Name, (CheckpointFormatFlags)flags, cancellationToken));

    public ValueTask<IReadOnlyList<RemoteCheckpoint>> ListAllCheckpointsAsync(RemoteDomain domain, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        var found = Find(domain);
        var names = await found.Checkpoints.ListAsync((CheckpointListFlags)flags, cancellationToken).ConfigureAwait(false);
        return Refs(names, Ref(found));
    });

    public ValueTask<IReadOnlyList<RemoteCheckpoint>> ListCheckpointChildrenAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        var found = Find(checkpoint.Domain);
        var names = await found.Checkpoints.ListChildrenAsync(checkpoint.Name, (CheckpointListFlags)flags, cancellationToken).ConfigureAwait(false);
        return Refs(names, Ref(found));
    });

    public ValueTask<RemoteCheckpoint> LookupCheckpointByNameAsync(RemoteDomain domain, string name, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        CheckFlags(flags, 0, "qemuDomainCheckpointLookupByName");
        var found = Find(domain);
        await found.Checkpoints.LookupAsync(name, cancellationToken).ConfigureAwait(false);
        return new RemoteCheckpoint(name, Ref(found));
    });

    public ValueTask<RemoteCheckpoint> GetCheckpointParentAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken) => CallAsync(async () =>
    {
        CheckFlags(flags, 0, "qemuDomainCheckpointGetParent");
        var found = Find(checkpoint.Domain);
        var parent = await found.Checkpoints.GetParentAsync(checkpoint.Name, cancellationToken).ConfigureAwait(false);
        return new RemoteCheckpoint(parent, Ref(found));
    });

    public ValueTask DeleteCheckpointAsync(RemoteCheckpoint checkpoint, uint flags, CancellationToken cancellationToken) =>
        CallAsync(() => Find(checkpoint.Domain).Checkpoints.DeleteAsync(checkpoint.Name, (CheckpointDeleteFlags)flags, cancellationToken));

    private static IReadOnlyList<RemoteCheckpoint> Refs(IReadOnlyList<string> names, RemoteDomain domain) =>
        [.. names.Select(n => new RemoteCheckpoint(n, domain))];
}
