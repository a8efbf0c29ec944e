using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Protocol;

/// <summary>One mounted file system of a guest, as its agent reports it (remote_domain_fsinfo).</summary>
/// <param name="Mountpoint">Where it is mounted in the guest.</param>
/// <param name="Name">The guest's name of its device.</param>
/// <param name="Type">The file system type (ext4, xfs, …).</param>
/// <param name="DiskAliases">The domain's disks it lies on, by target dev.</param>
public sealed record GuestFileSystem(string Mountpoint, string Name, string Type, IReadOnlyList<string> DiskAliases)
{
    public void Write(XdrWriter writer)
    {
        writer.WriteString(Mountpoint, RemoteWire.MaxStringLength);
        writer.WriteString(Name, RemoteWire.MaxStringLength);
        writer.WriteString(Type, RemoteWire.MaxStringLength);
        writer.WriteArrayCount(DiskAliases.Count, RemoteWire.MaxGuestFileSystemDisks, "disk aliases");
        foreach (var alias in DiskAliases)
        {
            writer.WriteString(alias, RemoteWire.MaxStringLength);
        }
    }
}

/// <summary>A guest's clock as its agent reads it (virDomainGetTime): seconds and nanoseconds since the epoch.</summary>
public readonly record struct GuestTime(long Seconds, uint Nanoseconds);
