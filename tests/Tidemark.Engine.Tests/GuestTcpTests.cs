using System.Globalization;
using System.Net;
using System.Text.Json;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats.Checkpoints;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// A domain started with <see cref="DomainStartFlags.GuestTcp"/> serves its disks on 127.0.0.1
/// as well: qemu-io writes through <c>nbd://127.0.0.1:PORT/vda</c>, the checkpoint's bitmap
/// records those writes, nbdinfo reads the export's properties.
/// </summary>
public sealed class GuestTcpTests
{
    private const long Size = 16 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GuestTcp_ServesTheDisksOnLoopback_WritesAreTracked_AndTheListenerEndsWithTheDomain()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("t", Size, vda);
        await domain.StartAsync(DomainStartFlags.GuestTcp, Ct);
        var endPoint = domain.Running!.TcpEndPoint;
        Assert.NotNull(endPoint);
        Assert.Equal(IPAddress.Loopback, endPoint.Address);
        var uri = $"nbd://127.0.0.1:{endPoint.Port.ToString(CultureInfo.InvariantCulture)}/vda";

        using (var info = JsonDocument.Parse(await Peer.RunCheckedAsync("nbdinfo", "--json", uri)))
        {
            var export = info.RootElement.GetProperty("exports")[0];
            Assert.Equal("vda", export.GetProperty("export-name").GetString());
            Assert.Equal(Size, export.GetProperty("export-size").GetInt64());
            Assert.False(export.GetProperty("is_read_only").GetBoolean());
        }

        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x61 0 64k", uri);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);

        // Over TCP as over the unix socket, every write passes the barrier and marks the bitmaps.
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x62 1M 128k", "-c", "flush", uri);
        Assert.Contains("size='131072'", await domain.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Size | CheckpointFormatFlags.NoDomain, Ct), StringComparison.Ordinal);
        await Guest.RunAsync(domain.Running.SocketPath, "vda", "read -P 0x61 0 64k", "read -P 0x62 1M 128k");

        await domain.DestroyAsync(Ct);
        var refused = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "read 0 4k", uri]);
        Assert.NotEqual(0, refused.ExitCode);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "read -P 0x61 0 64k", "-c", "read -P 0x62 1M 128k", test.ImagePath("t", vda));
    }

    [Fact]
    public async Task WithoutTheFlag_OnlyTheUnixSocket()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("u", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        Assert.Null(domain.Running!.TcpEndPoint);
        await Guest.RunAsync(domain.Running.SocketPath, "vda", "write -P 0x61 0 64k");
        await domain.DestroyAsync(Ct);

        var unknown = await Assert.ThrowsAsync<EngineException>(() => domain.StartAsync((DomainStartFlags)4, Ct));
        Assert.Contains("virDomainCreateWithFlags", unknown.Message, StringComparison.Ordinal);
        Assert.Null(domain.Running);
    }
}
