using System.Buffers.Binary;
using System.Text.Json.Nodes;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Image;

/// <summary>
/// <c>tidemark image check -r</c> against <c>qemu-img check -r</c> on two copies of the same
/// deliberately damaged image: the same exit status, standard output and error lines, a clean
/// <c>qemu-img check</c> afterwards and the same <c>qemu-img info --output=json</c>.
/// </summary>
public sealed class ImageRepairCommandTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A way to damage the image (image, scratch directory, cluster size), and the repair modes, compat levels and cluster sizes it is repaired in.</summary>
    private sealed record DamageKind(string Name, Func<string, TempDirectory, int, Task> Apply, (string Mode, string Compat, int ClusterSize)[] Variants);

    private static readonly DamageKind[] DamageKinds =
    [
        // A refcount update that was written while the L2 update that would use it was not.
        new("raised", (image, _, _) => AddRefcountAsync(image, HostCluster(image, 0), +1), [("leaks", "1.1", 65536), ("all", "1.1", 65536), ("leaks", "0.10", 4096), ("all", "1.1", 2097152)]),

        // The L2 entry's update was lost: its data cluster is counted but unused.
        new("unreferenced", (image, _, _) => ClearL2EntryAsync(image, 1), [("leaks", "1.1", 65536), ("all", "0.10", 65536)]),

        // A cluster shared with a snapshot counted once only.
        new("lowered", LowerSharedRefcountAsync, [("leaks", "1.1", 4096), ("all", "1.1", 4096)]),

        // A cluster in use with refcount 0: only a rebuild of the refcount structure repairs it.
        new("zero", (image, _, _) => AddRefcountAsync(image, HostCluster(image, 1), -1), [("all", "1.1", 65536), ("leaks", "1.1", 65536), ("all", "0.10", 4096)]),
        new("compressed", RaiseCompressedRefcountAsync, [("all", "1.1", 65536)]),
        new("clean", (_, _, _) => Task.CompletedTask, [("all", "1.1", 65536)]),
    ];

    /// <summary>Every damage kind in each of its variants: one test case each.</summary>
    public static TheoryData<string, string, int, string> DamageCases()
    {
        var cases = new TheoryData<string, string, int, string>();
        foreach (var kind in DamageKinds)
        {
            foreach (var (mode, compat, clusterSize) in kind.Variants)
            {
                cases.Add(mode, compat, clusterSize, kind.Name);
            }
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(DamageCases))]
    public async Task Damaged_RepairedAsQemuImgRepairsIt(string mode, string compat, int clusterSize, string damage)
    {
        using var dir = new TempDirectory();
        var original = dir.File("original.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"compat={compat},cluster_size={clusterSize}", original, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 256k", "-c", "write -P 0x33 5M 100k", original);
        await DamageKinds.Single(k => k.Name == damage).Apply(original, dir, clusterSize);

        var (qemu, tidemark) = await RepairBothAsync(dir, original, ["-r", mode]);
        await AssertSameAfterAsync(qemu, tidemark, clean: mode == "all");
    }

    private static async Task LowerSharedRefcountAsync(string image, TempDirectory dir, int clusterSize)
    {
        await Peer.RunCheckedAsync("qemu-img", "snapshot", "-c", "s1", image);
        await AddRefcountAsync(image, HostCluster(image, 2), -1);
    }

    /// <summary>The image compressed by qemu-img convert -c, then a compressed cluster's refcount raised by 2.</summary>
    private static async Task RaiseCompressedRefcountAsync(string image, TempDirectory dir, int clusterSize)
    {
        var plain = dir.File("plain.qcow2");
        File.Move(image, plain);
        await Peer.RunCheckedAsync("qemu-img", "convert", "-c", "-f", "qcow2", "-O", "qcow2", plain, image);
        await AddRefcountAsync(image, (clusterSize * 3L) / clusterSize, +2);
    }

    [Theory]
    [InlineData("all", "human")]
    [InlineData("leaks", "human")]
    [InlineData("all", "json")]
    public async Task LazyRefcountsDirty_RepairedAndClearedThenWritable(string mode, string output)
    {
        using var dir = new TempDirectory();
        var original = dir.File("original.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", original, "8M");

        // qemu-io killed with its writes done: the dirty bit set and refcounts not written.
        await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x5a 0 300k", "-c", "write -P 0x11 4M 64k", "-c", "sigraise 9", original]);
        var header = await File.ReadAllBytesAsync(original, Ct);
        Assert.Equal(1UL, BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(72)) & 1);

        var (qemu, tidemark) = await RepairBothAsync(dir, original, ["-r", mode, $"--output={output}"]);
        await AssertSameAfterAsync(qemu, tidemark, clean: mode == "all");
        var info = JsonNode.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", tidemark))!;
        Assert.False(info["dirty-flag"]!.GetValue<bool>());
        if (mode == "leaks")
        {
            // -r leaks cannot rebuild refcounts: qemu-img clears the dirty bit on close all the
            // same and leaves the refcounts broken (checked equal above).
            return;
        }

        // Writable again, by Tidemark too, and the content QEMU wrote before it was killed is there.
        var resize = await CliRun.RunAsync("image", "resize", tidemark, "+1M");
        Assert.Equal(0, resize.ExitCode);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x22 1M 4k", tidemark);
        await Peer.RunCheckedAsync("qemu-img", "check", tidemark);
        var read = await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 0 300k", "-c", "read -P 0x11 4M 64k", tidemark);
        Assert.DoesNotContain("Pattern verification failed", read, StringComparison.Ordinal);
    }

    [Fact]
    public async Task KilledDuringRepair_LeavesTheDamageOrLeaksOnly_AndRepairsLater()
    {
        using var dir = new TempDirectory();
        var original = dir.File("original.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096,lazy_refcounts=on", original, "64M");
        await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x5a 0 40M", "-c", "write -P 0x11 50M 64k", "-c", "sigraise 9", original]);
        var before = await Peer.RunAsync("qemu-img", ["check", original]);
        Assert.Equal(2, before.ExitCode);
        var random = new Random(5);
        for (var trial = 0; trial < 8; trial++)
        {
            var file = dir.File($"t{trial}.qcow2");
            File.Copy(original, file);
            using (var process = System.Diagnostics.Process.Start(await TidemarkProgram.StartInfoAsync(["image", "check", "-r", "all", file]))!)
            {
                var drainOut = process.StandardOutput.ReadToEndAsync(Ct);
                var drainErr = process.StandardError.ReadToEndAsync(Ct);
                await Task.Delay(random.Next(0, 120), Ct);
                process.Kill();
                await process.WaitForExitAsync(Ct);
                await drainOut;
                await drainErr;
            }

            // Untouched (the same damage), or repaired with at most the old structure leaked.
            var after = await Peer.RunAsync("qemu-img", ["check", file]);
            Assert.True(after.ExitCode is 0 or 3 || (after.ExitCode == 2 && after.Stdout == before.Stdout), $"trial {trial}: qemu-img check exited {after.ExitCode}\n{after.Stdout}{after.Stderr}");
            var again = await CliRun.RunAsync("image", "check", "-r", "all", file);
            Assert.Equal(0, again.ExitCode);
            await Peer.RunCheckedAsync("qemu-img", "check", file);
        }
    }

    [Fact]
    public async Task BadRepairMode_AndRaw_AsQemuImg()
    {
        using var dir = new TempDirectory();
        var raw = dir.File("a.img");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", raw, "1M");
        var q = await Peer.RunAsync("qemu-img", ["check", "-r", "leaks", "-f", "raw", raw]);
        var t = await CliRun.RunAsync("image", "check", "-r", "leaks", "-f", "raw", raw);
        Assert.Equal(63, q.ExitCode);
        Assert.Equal(q.ExitCode, t.ExitCode);
        Assert.Contains("This image format does not support checks", t.Stderr, StringComparison.Ordinal);

        var bad = await CliRun.RunAsync("image", "check", "-r", "bogus", raw);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("bogus", bad.Stderr, StringComparison.Ordinal);
    }

    private static async Task<(string Qemu, string Tidemark)> RepairBothAsync(TempDirectory dir, string original, string[] options)
    {
        var qemu = dir.File("qemu.qcow2");
        var tidemark = dir.File("tidemark.qcow2");
        File.Copy(original, qemu);
        File.Copy(original, tidemark);
        var q = await Peer.RunAsync("qemu-img", ["check", .. options, qemu]);
        var t = await CliRun.RunAsync(["image", "check", .. options, tidemark]);
        Assert.Equal(q.ExitCode, t.ExitCode);
        Assert.Equal(q.Stdout.Replace(qemu, "FILE", StringComparison.Ordinal), t.Stdout.Replace(tidemark, "FILE", StringComparison.Ordinal));
        Assert.Equal(q.Stderr.Replace(qemu, "FILE", StringComparison.Ordinal).Replace("qemu-img: ", "error: ", StringComparison.Ordinal), t.Stderr.Replace(tidemark, "FILE", StringComparison.Ordinal));
        return (qemu, tidemark);
    }

    private static async Task AssertSameAfterAsync(string qemu, string tidemark, bool clean)
    {
        var q = await Peer.RunAsync("qemu-img", ["check", qemu]);
        var t = await Peer.RunAsync("qemu-img", ["check", tidemark]);
        Assert.Equal(q.ExitCode, t.ExitCode);
        Assert.Equal(q.Stdout, t.Stdout);
        if (clean)
        {
            Assert.Equal(0, t.ExitCode);
        }

        Assert.Equal(await InfoAsync(qemu), await InfoAsync(tidemark));
        await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", qemu, tidemark);
    }

    private static async Task<string> InfoAsync(string file)
    {
        var info = JsonNode.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", file))!.AsObject();
        info.Remove("filename");
        info.Remove("actual-size");
        return info.ToJsonString();
    }

    private static (int Bits, long L1, long RefcountTable) Header(byte[] h)
        => ((int)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(20)), (long)BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(40)), (long)BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(48)));

    private static long L2EntryOffset(string file, long guestCluster)
    {
        var bytes = File.ReadAllBytes(file);
        var (bits, l1, _) = Header(bytes);
        var entries = 1L << (bits - 3);
        var l2 = (long)(BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)(l1 + (guestCluster / entries * 8)))) & 0x00fffffffffffe00);
        return l2 + (guestCluster % entries * 8);
    }

    private static long HostCluster(string file, long guestCluster)
    {
        var bytes = File.ReadAllBytes(file);
        var entry = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)L2EntryOffset(file, guestCluster)));
        return (long)(entry & 0x00fffffffffffe00) >> Header(bytes).Bits;
    }

    private static async Task ClearL2EntryAsync(string file, long guestCluster)
    {
        var at = L2EntryOffset(file, guestCluster);
        await using var stream = File.Open(file, FileMode.Open, FileAccess.ReadWrite);
        stream.Position = at;
        await stream.WriteAsync(new byte[8], Ct);
    }

    /// <summary>Changes one 16-bit refcount in place (the images here use the default width).</summary>
    private static async Task AddRefcountAsync(string file, long cluster, int delta)
    {
        var bytes = await File.ReadAllBytesAsync(file, Ct);
        var (bits, _, table) = Header(bytes);
        var perBlock = 1L << (bits - 1);
        var block = (long)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)(table + (cluster / perBlock * 8))));
        var at = (int)(block + (cluster % perBlock * 2));
        var value = BinaryPrimitives.ReadUInt16BigEndian(bytes.AsSpan(at));
        await using var stream = File.Open(file, FileMode.Open, FileAccess.ReadWrite);
        stream.Position = at;
        var updated = new byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(updated, (ushort)(value + delta));
        await stream.WriteAsync(updated, Ct);
    }
}
