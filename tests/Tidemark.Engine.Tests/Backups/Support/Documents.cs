using Tidemark.Formats.Backups;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups.Support;

/// <summary>Aligned backup documents for one disk <c>vda</c>, with the driver defaults applied, and peer checks of what the jobs write.</summary>
internal static class Documents
{
    public static BackupDefinition Push(string target, StorageFormat format, string? incremental = null)
        => BackupDefaults.Apply(new BackupDefinition(BackupMode.Push, incremental, null, [Disk(target, format, incremental)]));

    public static BackupDefinition Pull(string socket, string scratch, string? incremental = null, bool? tls = null)
        => BackupDefaults.Apply(new BackupDefinition(BackupMode.Pull, incremental, new BackupServer(ServerTransport.Unix, Socket: socket, Tls: tls), [Disk(scratch, StorageFormat.Qcow2, incremental)]));

    private static BackupDisk Disk(string path, StorageFormat format, string? incremental)
        => new("vda", Backup: true, Mode: incremental is null ? BackupDiskMode.Full : BackupDiskMode.Incremental, Incremental: incremental, Store: BackupStore.At(StoreType.File, path, format));

    /// <summary>qemu-img compare says the two images hold the same bytes.</summary>
    public static async Task AssertSameContentAsync(string image, string format, string reference)
    {
        var result = await Peer.RunAsync("qemu-img", ["compare", "-U", "-f", format, "-F", "raw", image, reference]);
        Assert.True(result.ExitCode == 0, $"qemu-img compare {image} {reference}: exit {result.ExitCode}\n{result.Stdout}{result.Stderr}");
    }

    /// <summary>qemu-img check finds nothing wrong.</summary>
    public static async Task AssertCleanAsync(string qcow2)
        => await Peer.RunCheckedAsync("qemu-img", "check", "-U", qcow2);
}
