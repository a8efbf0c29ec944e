using System.Net.Sockets;
using System.Text.Json;
using Tidemark.Nbd.Client;
using Tidemark.Nbd.Protocol;
using Tidemark.Nbd.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>
/// Tidemark's client against real servers (qemu-nbd with persistent bitmaps, nbdkit's memory and
/// sparse-random plugins): reads, writes and block status equal to what the peers say is true.
/// </summary>
public sealed class ClientInteropTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private static NbdConnectOptions Unix(string socket, string export = "", params string[] contexts)
        => new() { EndPoint = new UnixDomainSocketEndPoint(socket), ExportName = export, MetaContexts = contexts };

    [Fact]
    public async Task QemuNbd_BitmapAllocationAndReads_EqualTheTruth()
    {
        using var dir = new TempDirectory("nbd-client-qemu");
        var qcow2 = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", qcow2);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", qcow2, "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "128k", qcow2, "b1");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x22 192k 64k", "-c", "write -P 0x33 1M 64k", "-c", "write -z 2M 128k", qcow2);
        var raw = dir.File("disk.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow2, raw);
        await using var qemu = await PeerServer.QemuNbdAsync(dir, "-r", "-f", "qcow2", "-t", "-e", "2", "-x", "vda", "-B", "b0", "-B", "b1", "-A", qcow2);

        await using var client = await NbdClient.ConnectAsync(Unix(qemu.SocketPath!, "vda", "base:allocation", "qemu:dirty-bitmap:b0", "qemu:dirty-bitmap:b1", "qemu:allocation-depth"), Token);
        Assert.Equal(4L << 20, client.Size);
        Assert.Equal(4, client.MetaContexts.Count);
        Assert.True(client.IsReadOnly);
        Assert.True(client.CanMultiConn);

        // Dirty: exactly what was written after the bitmap was added (b1 rounds to 128 KiB).
        Assert.Equal([(0, 192 << 10, 0u), (192 << 10, 64 << 10, 1u), (256 << 10, 768 << 10, 0u), (1 << 20, 64 << 10, 1u), ((1 << 20) + (64 << 10), (1 << 20) - (64 << 10), 0u), (2 << 20, 128 << 10, 1u), ((2 << 20) + (128 << 10), (2 << 20) - (128 << 10), 0u)],
            await ClientMaps.MapAsync(client, "qemu:dirty-bitmap:b0"));
        Assert.Equal([(0, 128 << 10, 0u), (128 << 10, 128 << 10, 1u), (256 << 10, 768 << 10, 0u), (1 << 20, 128 << 10, 1u), ((1 << 20) + (128 << 10), (1 << 20) - (128 << 10), 0u), (2 << 20, 128 << 10, 1u), ((2 << 20) + (128 << 10), (2 << 20) - (128 << 10), 0u)],
            await ClientMaps.MapAsync(client, "qemu:dirty-bitmap:b1"));

        // Allocation: data where qemu-img map says data, zeroes elsewhere.
        using var map = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "qcow2", qcow2));
        var dataRanges = map.RootElement.EnumerateArray().Where(e => e.GetProperty("data").GetBoolean())
            .Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64())).ToList();
        var allocation = await ClientMaps.MapAsync(client, "base:allocation");
        Assert.Equal(dataRanges, allocation.Where(e => (e.Flags & 1) == 0).Select(e => (e.Offset, e.Length)).ToList());
        Assert.All(allocation.Where(e => e.Flags != 0), e => Assert.Equal(3u, e.Flags));
        var depth = await ClientMaps.MapAsync(client, "qemu:allocation-depth");
        Assert.Equal(1u, depth[0].Flags);

        // Reads, 64 at once (pipelined), equal the converted file.
        var expected = await File.ReadAllBytesAsync(raw, Token);
        var actual = new byte[expected.Length];
        const int Piece = 64 << 10;
        await Task.WhenAll(Enumerable.Range(0, expected.Length / Piece).Select(i => client.ReadAsync((long)i * Piece, actual.AsMemory(i * Piece, Piece), cancellationToken: Token).AsTask()));
        Assert.Equal(expected, actual);

        var refused = await Assert.ThrowsAsync<NbdException>(async () => await client.WriteAsync(0, new byte[512], cancellationToken: Token));
        Assert.Equal(NbdErrorReason.InvalidArgument, refused.Reason);
        await client.DisconnectAsync(Token);
        Assert.Equal(NbdClientState.Closed, client.State);
    }

    [Fact]
    public async Task QemuNbd_Writes_LandInTheImage()
    {
        using var dir = new TempDirectory("nbd-client-write");
        var path = await Images.SparseRawAsync(dir);
        await using (var qemu = await PeerServer.QemuNbdAsync(dir, "-f", "raw", "-t", "-x", "vda", path))
        await using (var client = await NbdClient.ConnectAsync(Unix(qemu.SocketPath!, "vda"), Token))
        {
            var pattern = Enumerable.Repeat((byte)0x99, 128 << 10).ToArray();
            await client.WriteAsync(5 << 20, pattern, NbdCommandFlags.Fua, Token);
            await client.WriteZeroesAsync(0, 64 << 10, NbdCommandFlags.None, Token);
            await client.TrimAsync(16 << 20, 64 << 10, cancellationToken: Token);
            await client.FlushAsync(Token);
            var e = await Assert.ThrowsAsync<NbdException>(async () => await client.ReadAsync(client.Size - 4, new byte[8], cancellationToken: Token));
            Assert.Equal(NbdErrorReason.InvalidArgument, e.Reason);
        }

        var check = await Peer.RunCheckedAsync("qemu-io", "-r", "-f", "raw", "-c", "read -P 0x99 5M 128k", "-c", "read -P 0 0 64k", "-c", "read -P 0xcd 3M 128k", path);
        Assert.DoesNotContain("Pattern verification failed", check, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Nbdkit_Memory_WritesReadBackAndShowInBlockStatus()
    {
        using var dir = new TempDirectory("nbd-client-nbdkit");
        await using var nbdkit = await PeerServer.NbdkitAsync(dir, "memory", "64M");
        await using var client = await NbdClient.ConnectAsync(Unix(nbdkit.SocketPath!, "", "base:allocation"), Token);
        Assert.Equal(64L << 20, client.Size);
        var data = new byte[1 << 20];
        new Random(7).NextBytes(data);
        await client.WriteAsync(8 << 20, data, cancellationToken: Token);
        await client.WriteAsync(40 << 20, data.AsMemory(0, 65536), cancellationToken: Token);
        await client.FlushAsync(Token);

        var back = new byte[data.Length];
        await client.ReadAsync(8 << 20, back, cancellationToken: Token);
        Assert.Equal(data, back);

        var map = await ClientMaps.MapAsync(client, "base:allocation");
        Assert.Equal([(0L, 8L << 20, 3u), (8L << 20, 1L << 20, 0u), (9L << 20, 31L << 20, 3u), (40L << 20, 65536L, 0u), ((40L << 20) + 65536, (24L << 20) - 65536, 3u)], map);

        // The same map, as libnbd's nbdinfo prints it from the same server.
        var nbdinfo = ClientMaps.FromNbdinfoJson(await Peer.RunCheckedAsync("nbdinfo", "--map", "--json", nbdkit.UnixUri()));
        Assert.Equal(nbdinfo, map);
    }

    [Fact]
    public async Task Nbdkit_SparseRandom_ReadsAndMapEqualLibnbds()
    {
        using var dir = new TempDirectory("nbd-client-sparse");
        await using var nbdkit = await PeerServer.NbdkitAsync(dir, "sparse-random", "32M", "seed=4242", "percent=30", "runlength=262144");
        var copy = dir.File("copy.raw");
        await Peer.RunCheckedAsync("nbdcopy", nbdkit.UnixUri(), copy);
        var expected = await File.ReadAllBytesAsync(copy, Token);

        await using var client = await NbdClient.ConnectAsync(Unix(nbdkit.SocketPath!, "", "base:allocation"), Token);
        var actual = new byte[expected.Length];
        const int Piece = 1 << 20;
        await Task.WhenAll(Enumerable.Range(0, actual.Length / Piece).Select(i => client.ReadAsync((long)i * Piece, actual.AsMemory(i * Piece, Piece), cancellationToken: Token).AsTask()));
        Assert.Equal(expected, actual);

        var map = await ClientMaps.MapAsync(client, "base:allocation");
        Assert.True(map.Count > 2);
        Assert.Equal(ClientMaps.FromNbdinfoJson(await Peer.RunCheckedAsync("nbdinfo", "--map", "--json", nbdkit.UnixUri())), map);
    }

    [Fact]
    public async Task Client_ListExportsAndContexts_FromQemuNbd()
    {
        using var dir = new TempDirectory("nbd-client-list");
        var path = await Images.SparseRawAsync(dir);
        await using var qemu = await PeerServer.QemuNbdAsync(dir, "-r", "-f", "raw", "-t", "-x", "vda", "-D", "the disk", "-A", path);
        var exports = await NbdClient.ListExportsAsync(Unix(qemu.SocketPath!), Token);
        Assert.Equal([new NbdExportListing("vda", "the disk")], exports);
        var contexts = await NbdClient.ListMetaContextsAsync(Unix(qemu.SocketPath!, "vda"), Token);
        Assert.Equal(["base:allocation", "qemu:allocation-depth"], contexts.Order(StringComparer.Ordinal));
        var unknown = await Assert.ThrowsAsync<NbdException>(async () => await NbdClient.ConnectAsync(Unix(qemu.SocketPath!, "nosuch"), Token));
        Assert.Equal(NbdErrorReason.UnknownExport, unknown.Reason);
    }

    [Fact]
    public async Task Client_SimpleReplies_ReadsFromTidemark()
    {
        using var dir = new TempDirectory("nbd-client-simple");
        var path = await Images.SparseRawAsync(dir);
        await using var image = RawImage.Open(path, readOnly: true);
        await using var server = await TestServer.StartAsync(dir, [new NbdExport("", image)]);
        var options = new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(server.SocketPath), StructuredReplies = false };
        await using var client = await NbdClient.ConnectAsync(options, Token);
        Assert.False(client.Structured);
        var buffer = new byte[256 << 10];
        await client.ReadAsync(3 << 20, buffer, cancellationToken: Token);
        Assert.All(buffer[..(128 << 10)], b => Assert.Equal(0xcd, b));
        Assert.All(buffer[(128 << 10)..], b => Assert.Equal(0, b));
    }
}
