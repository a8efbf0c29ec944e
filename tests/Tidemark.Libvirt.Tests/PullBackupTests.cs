using System.Net.Sockets;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Nbd.Client;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Pull backups begun through Tidemark's <see cref="LibvirtClient"/> on real libvirt and QEMU,
/// their exports read with Tidemark's <see cref="NbdClient"/>: extents equal what libnbd's
/// nbdinfo says of the same export, data equal what the guest (qemu-io inside QEMU) wrote.
/// </summary>
public sealed class PullBackupTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private const int DiskSize = 16 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task FullThenIncremental_ExportsReadByTidemarksClient_EqualNbdinfoAndTheGuestsWrites()
    {
        var libvirtd = await fixture.GetAsync();
        var name = libvirtd.NewDomainName("pull");
        await libvirtd.DefineDomainAsync(name, disks: 2);
        await using var client = await LibvirtClient.ConnectAsync(libvirtd.Uri, cancellationToken: Ct);
        var domain = await client.LookupDomainByNameAsync(name, Ct);
        var socket = libvirtd.File(name + ".nbd");

        // What each disk holds, kept beside the guest's writes.
        var disks = new Dictionary<string, byte[]> { ["vda"] = new byte[DiskSize], ["vdb"] = new byte[DiskSize] };
        async Task WriteAsync(string target, byte pattern, int offset, int length)
        {
            await libvirtd.GuestWriteAsync(name, target, $"write -P 0x{pattern:x2} {offset} {length}");
            disks[target].AsSpan(offset, length).Fill(pattern);
        }

        await WriteAsync("vda", 0x41, 0, 1 << 20);
        await WriteAsync("vdb", 0x42, 4 << 20, 512 << 10);

        await client.BeginBackupAsync(domain, BackupXml(libvirtd, name, socket, incremental: null), "<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        var full = disks.ToDictionary(d => d.Key, d => d.Value.ToArray());

        // The guest goes on writing; the export keeps the instant the backup began.
        await WriteAsync("vda", 0x43, 0, 64 << 10);
        foreach (var target in disks.Keys)
        {
            await using var nbd = await ConnectAsync(socket, target, "base:allocation");
            Assert.Equal(DiskSize, nbd.Size);
            Assert.True(nbd.IsReadOnly);
            var allocation = await ExportMaps.ReadAsync(nbd, "base:allocation", Ct);
            Assert.Equal(await ExportMaps.NbdinfoAsync(Uri(socket, target), "base:allocation"), allocation);
            Assert.Contains(allocation, e => e.Flags == 0);
            Assert.Equal(full[target], await ReadAllAsync(nbd));
        }

        var listing = await NbdClient.ListMetaContextsAsync(Options(socket, "vda", "qemu:"), Ct);
        Assert.DoesNotContain("qemu:dirty-bitmap:backup-vda", listing);
        await EndJobAsync(client, domain);

        await WriteAsync("vda", 0x44, 2 << 20, 128 << 10);
        await client.BeginBackupAsync(domain, BackupXml(libvirtd, name, socket, incremental: "c1"), "<domaincheckpoint><name>c2</name></domaincheckpoint>", cancellationToken: Ct);
        Assert.Contains("exportbitmap='backup-vda'", await client.GetBackupXmlAsync(domain, cancellationToken: Ct), StringComparison.Ordinal);

        // Dirty since c1: the write made during the full backup and the one after it.
        var dirtyVda = new List<(long, long, uint)> { (0, 64 << 10, 1), (64 << 10, (2 << 20) - (64 << 10), 0), (2 << 20, 128 << 10, 1), ((2 << 20) + (128 << 10), DiskSize - (2 << 20) - (128 << 10), 0) };
        var expectedDirty = new Dictionary<string, List<(long, long, uint)>> { ["vda"] = dirtyVda, ["vdb"] = [(0, DiskSize, 0)] };
        foreach (var target in disks.Keys)
        {
            var bitmap = $"qemu:dirty-bitmap:backup-{target}";
            await using var nbd = await ConnectAsync(socket, target, "base:allocation", bitmap);
            Assert.Equal(2, nbd.MetaContexts.Count);
            var dirty = await ExportMaps.ReadAsync(nbd, bitmap, Ct);
            Assert.Equal(expectedDirty[target], dirty);
            Assert.Equal(await ExportMaps.NbdinfoAsync(Uri(socket, target), bitmap), dirty);
            Assert.Equal(await ExportMaps.NbdinfoAsync(Uri(socket, target), "base:allocation"), await ExportMaps.ReadAsync(nbd, "base:allocation", Ct));

            // What an incremental reads: the dirty extents, as the guest wrote them.
            foreach (var (offset, length, _) in dirty.Where(e => e.Flags == 1))
            {
                var data = new byte[length];
                await nbd.ReadAsync(offset, data, cancellationToken: Ct);
                Assert.Equal(disks[target].AsSpan((int)offset, (int)length).ToArray(), data);
            }

            Assert.Equal(disks[target], await ReadAllAsync(nbd));
        }

        await EndJobAsync(client, domain);
        Assert.Equal(["c1", "c2"], (await client.ListAllCheckpointsAsync(domain, 1 << 1, Ct)).Select(c => c.Name));
    }

    private static string BackupXml(PrivateLibvirtd libvirtd, string name, string socket, string? incremental)
    {
        var disks = string.Concat(new[] { "vda", "vdb" }.Select(t => $"<disk name='{t}' backup='yes' type='file'><scratch file='{libvirtd.File($"{name}-{t}.scratch")}'/></disk>"));
        var from = incremental is null ? "" : $"<incremental>{incremental}</incremental>";
        return $"<domainbackup mode='pull'>{from}<server transport='unix' socket='{socket}'/><disks>{disks}</disks></domainbackup>";
    }

    private static string Uri(string socket, string export) => $"nbd+unix:///{export}?socket={socket}";

    private static NbdConnectOptions Options(string socket, string export, params string[] contexts) =>
        new() { EndPoint = new UnixDomainSocketEndPoint(socket), ExportName = export, MetaContexts = contexts };

    private static Task<NbdClient> ConnectAsync(string socket, string export, params string[] contexts) =>
        NbdClient.ConnectAsync(Options(socket, export, contexts), Ct);

    private static async Task<byte[]> ReadAllAsync(NbdClient nbd)
    {
        var data = new byte[nbd.Size];
        const int Piece = 4 << 20;
        for (var offset = 0; offset < data.Length; offset += Piece)
        {
            await nbd.ReadAsync(offset, data.AsMemory(offset, Math.Min(Piece, data.Length - offset)), cancellationToken: Ct);
        }

        return data;
    }

    /// <summary>Ends the pull backup as a backup client does when it has read everything, and waits until it is gone.</summary>
    private static async Task EndJobAsync(LibvirtClient client, RemoteDomain domain)
    {
        await client.AbortJobAsync(domain, cancellationToken: Ct);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while ((await client.GetJobInfoAsync(domain, Ct)).Type != DomainJobType.None)
        {
            Assert.True(DateTime.UtcNow < deadline, "the backup job did not end");
            await Task.Delay(100, Ct);
        }
    }
}
