namespace Tidemark.Engine.Tests.Differential;

/// <summary>
/// The guest export against qemu-nbd: the same requests, sent by libnbd to a running domain's
/// disk and to qemu-nbd serving an identical copy of its image, get the same replies, the same
/// <c>base:allocation</c> block status, and leave the same images (qemu-img compare, check).
/// </summary>
public sealed class GuestExportDifferentialTests
{
    // 4 MiB and three sectors: the last 64 KiB cluster is partial, as the end of a disk may be.
    internal const long Size = (4 << 20) + 1536;
    internal const long K = 1024;
    internal const long M = 1024 * 1024;

    // Data in clusters 0-2 and 16, a zero cluster at 2 MiB, data in the partial last cluster.
    internal static readonly string[] Layout = ["write -P 0x11 0 192k", "write -P 0x12 1M 64k", "write -z 2M 128k", $"write -P 0x13 {Size - 4096} 4096"];

    private const string EmptyRead = "ok e3b0c44298fc1c14 chunks []";

    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public async Task RequestsAtEveryEdge_AnswerAsQemuNbd(string format)
    {
        await using var twins = await TwinExports.StartAsync(format, Size, Layout);
        var plan = new NbdRequestPlan()
            .Handshake()
            .Status(0, Size)
            .Read(0, 4096)
            .Read(100, 5000)
            .Read(60 * K, 200 * K)
            .Read(0, 256 * K, "df")
            .Write((64 * K) - 700, 1400, 0x21)
            .Read(63 * K, 3 * K)
            .Write(3, 1, 0x22)
            .Write(Size - 512, 512, 0x23)
            .Read(Size - 100, 100)
            .Read(Size - 100, 200)
            .Read(Size, 1)
            .Read(Size + 4096, 512);
        WritesPastTheEnd(plan);
        ZeroLengthRequests(plan);
        plan.Status(0, 0)
            .Zero(100 * K, 10000)
            .Zero((128 * K) + 512, 64 * K, "no_hole")
            .Read(96 * K, 128 * K)
            .Zero(3 * M, 64 * K, "fast_zero")
            .Zero(0, 64 * K, "fast_zero")
            .Zero((1 * M) + 512, 4096, "fast_zero")
            .Zero((2 * M) + 512, 4096, "fast_zero")
            .Zero(1 * M, 64 * K, "fast_zero", "no_hole")
            .Zero(Size - 1536, 1536, "fast_zero")
            .Trim(150 * K, 64 * K)
            .Trim(Size - 4096, 4096)
            .Trim(Size - 100, 200)
            .Trim(Size + 512, 512)
            .Cache(0, Size)
            .Cache(Size - 100, 200)
            .Flush()
            .Write(512 * K, 12 * K, 0x27, "fua")
            .Zero(600 * K, 64 * K, "fua")
            .Trim(700 * K, 64 * K, "fua")
            .Status(0, Size, "req_one")
            .Status((2 * M) + 100, 1000, "req_one")
            .Status(Size - 100, 1000)
            .Status(Size - 100, 100, "req_one")
            .Status(Size, 512)
            .Status(Size + 512, 512)
            .Read(0, 32 * M)
            .Status(0, 8 * M)
            .Status(0, Size)
            .Read(0, Size);

        // Over the advertised maximum payload (32 MiB): refused with EINVAL. Tidemark reads and
        // drops the payload of a write it refuses, so the stream stays framed and the
        // connection goes on (proto.md "Request message"). qemu-nbd 7.2 leaves the payload
        // unread and the connection is lost; a guest never sends more than the maximum the
        // handshake gave it, so that is not copied.
        plan.Read(0, (32 * M) + 512)
            .Write(0, (32 * M) + 512, 0x28).Deliberately(null, "error EINVAL")
            .Read(0, 4096).Deliberately(null, "ok ad7facb2586fc6e9 chunks [(0, 4096, 'hole')]");
        await twins.AssertSameAsync(plan);
        await twins.StopAndCompareAsync();
    }

    [Fact]
    public async Task OverABackingFile_ReadsThrough_AndZeroesHideIt_AsQemuNbd()
    {
        string[] baseLayout = ["write -P 0x31 0 1M", "write -P 0x32 2M 1M", $"write -P 0x33 {Size - 8192} 8192"];
        string[] overlay = ["write -P 0x41 128k 64k", "write -z 2304k 64k"];
        await using var twins = await TwinExports.StartAsync("qcow2", Size, overlay, baseLayout);
        var plan = new NbdRequestPlan()
            .Handshake()
            .Status(0, Size)
            .Read(0, 256 * K)
            .Read((1 * M) - 1000, 2000)
            .Read((2 * M) + (256 * K) - 100, (64 * K) + 200)
            .Write((100 * K) + 3, 1000, 0x51)
            .Read(64 * K, 128 * K)
            .Zero(2 * M, 64 * K)
            .Zero((2 * M) + (64 * K) + 512, 4096)
            .Zero((2 * M) + (128 * K), 64 * K, "no_hole")
            .Zero((2 * M) + (320 * K), 64 * K, "fast_zero")
            .Zero((2 * M) + (400 * K) + 512, 4096, "fast_zero")
            .Zero((1 * M) + 512, 4096, "fast_zero")
            .Zero(Size - 1536, 1536, "fast_zero")
            .Read(2 * M, 512 * K)
            .Trim((2 * M) + (512 * K), 128 * K)
            .Read((2 * M) + (512 * K), 128 * K)
            .Trim(0, 64 * K)
            .Read(0, 64 * K)
            .Write(Size - 100, 100, 0x52, "fua")
            .Status(0, Size, "req_one")
            .Status(0, Size)
            .Read(0, Size);
        await twins.AssertSameAsync(plan);
        await twins.StopAndCompareAsync();
    }

    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public async Task ManyRequestsInFlight_AndConnectionsThatEndWithRequestsInFlight_AsQemuNbd(string format)
    {
        await using var twins = await TwinExports.StartAsync(format, Size, Layout);

        // Small unaligned writes side by side, sent before any reply is read: many share a
        // cluster, some clusters are allocated by them (qcow2), some already held data.
        var inCluster = Enumerable.Range(0, 128).Select(i => ((1 * M) + (i * 1000L) + 7, 1000L, (byte)(0x60 + (i % 32)))).ToArray();
        var spread = Enumerable.Range(0, 100).Select(i => ((3 * M) + (i * 3000L), 3000L, (byte)(0x80 + (i % 16)))).ToArray();
        var plan = new NbdRequestPlan()
            .WritesInFlight(inCluster)
            .WritesInFlight(spread)
            .ReadsInFlight([.. Enumerable.Range(0, 80).Select(i => ((1 * M) - 4096 + (i * 5000L), 5000L))])
            .Status(0, Size)
            .Read(1 * M, 128 * K)
            .Read(3 * M, 300 * K);
        await twins.AssertSameAsync(plan);

        // NBD_CMD_DISC right behind writes whose replies were never read: the server finishes
        // them before it closes (proto.md "Terminating the transmission phase").
        var disconnect = new NbdRequestPlan()
            .DisconnectInFlight([.. Enumerable.Range(0, 40).Select(i => ((3 * M) + (512 * K) + (i * 4100L), 4100L, (byte)(0xa0 + (i % 8))))]);
        await twins.AssertSameAsync(disconnect);

        // A connection dropped with writes in flight; they write what is already there.
        var written = new NbdRequestPlan().Write((3 * M) + (768 * K), 128 * K, 0xc1);
        await twins.AssertSameAsync(written);
        var dropped = new NbdRequestPlan()
            .AbandonInFlight([.. Enumerable.Range(0, 32).Select(i => ((3 * M) + (768 * K) + (i * 4096L), 4096L, (byte)0xc1))]);
        await twins.AssertSameAsync(dropped);

        var after = new NbdRequestPlan()
            .Read((3 * M) + (512 * K), 512 * K)
            .Status(0, Size)
            .Read(0, Size);
        await twins.AssertSameAsync(after);
        await twins.StopAndCompareAsync();
    }

    /// <summary>
    /// Writes and zeroes that reach past the end. proto.md ("Error values") asks for ENOSPC when a
    /// write goes beyond the end, which nbdkit sends and Tidemark too; qemu-nbd 7.2 replies EINVAL
    /// to every request outside the export. No guest depends on either: QEMU's block layer never
    /// sends a request past the size the handshake gave it.
    /// </summary>
    internal static NbdRequestPlan WritesPastTheEnd(NbdRequestPlan plan)
        => plan.Write(Size - 100, 200, 0x24).Deliberately("error EINVAL", "error ENOSPC")
            .Write(Size, 512, 0x25).Deliberately("error EINVAL", "error ENOSPC")
            .Write(Size + 4096, 512, 0x25).Deliberately("error EINVAL", "error ENOSPC")
            .Zero(Size - 1000, 2000).Deliberately("error EINVAL", "error ENOSPC")
            .Zero(Size, 1).Deliberately("error EINVAL", "error ENOSPC");

    /// <summary>
    /// Requests of length 0. proto.md leaves them unspecified; qemu-nbd 7.2 does nothing and
    /// replies success, Tidemark refuses them with EINVAL as nbdkit does (it has nothing to do
    /// and a client that sends one is confused). QEMU's block layer never sends one: it
    /// completes a zero-byte request itself.
    /// </summary>
    internal static NbdRequestPlan ZeroLengthRequests(NbdRequestPlan plan)
        => plan.Read(0, 0).Deliberately(EmptyRead, "error EINVAL")
            .Read(Size, 0).Deliberately(EmptyRead, "error EINVAL")
            .Write(0, 0, 0x26).Deliberately("ok", "error EINVAL")
            .Write(Size, 0, 0x26).Deliberately("ok", "error EINVAL")
            .Zero(0, 0).Deliberately("ok", "error EINVAL")
            .Trim(0, 0).Deliberately("ok", "error EINVAL")
            .Cache(0, 0).Deliberately("ok", "error EINVAL");
}
