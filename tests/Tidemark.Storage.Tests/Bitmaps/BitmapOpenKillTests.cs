using System.Globalization;
using System.Text.Json;
using Tidemark.Storage.Qcow2.Bitmaps;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Bitmaps;

/// <summary>
/// A child process opens an image holding four persistent bitmaps (QEMU's, recorded by qemu-io)
/// for writing, which marks them IN_USE, and is SIGKILLed part way through the open. After every
/// kill each bitmap is still listed by <c>qemu-img info</c>, all of them clean with their old
/// bits or all of them <c>in-use</c>; <c>qemu-img check</c> finds leaks at most; and QEMU works
/// on the file: <c>check -r all</c> repairs it and <c>bitmap --remove</c> removes an in-use
/// bitmap. Never the image with no bitmaps at all that an interrupted in-place update leaves.
/// </summary>
public sealed class BitmapOpenKillTests
{
    private const int InsideKills = 20;
    private const int MaxKills = 60;
    private static readonly string[] Names = ["b0", "b1", "b2", "b3"];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(4096, 31)]
    [InlineData(65536, 32)]
    public async Task KilledWhileOpeningForWrite_EveryBitmapStillListed_CleanOrInUse(int clusterSize, int seed)
    {
        var random = new Random(seed);
        using var dir = new TempDirectory();
        var template = dir.File("template.qcow2");
        await CreateAsync(template, clusterSize);
        var expected = await LoadAsync(template);
        Assert.All(expected.Values, e => Assert.NotEmpty(e.Runs));

        // A whole open first: it times the child's run and shows the end state, all IN_USE.
        var image = dir.File("a.qcow2");
        File.Copy(template, image, overwrite: true);
        var output = new List<string>();
        var whole = await CrashWriterOperation.RunAsync(["open", image], null, output);
        Assert.Equal([$"opened {Names.Length}"], output);
        Assert.StartsWith("in-use", await JudgeAsync(image, expected, "the whole open"), StringComparison.Ordinal);

        // Then kills inside the open. Most of it is reading (and compiling the code that
        // reads), so every other kill counts its delay, up to a few milliseconds, from the
        // child's first change to the file: those land among the writes that mark IN_USE.
        // Others count from "started"; one that came after the open ("opened" printed) draws
        // from a shorter span next time.
        var (inside, kills, span) = (0, 0, whole);
        var outcomes = new Dictionary<string, int>();
        while (inside < InsideKills && kills < MaxKills)
        {
            kills++;
            File.Copy(template, image, overwrite: true);
            output.Clear();
            var atWrite = kills % 2 == 0;
            var delay = atWrite ? TimeSpan.FromMilliseconds(40 * random.NextDouble()) : span * random.NextDouble();
            var (length, written) = (new FileInfo(image).Length, File.GetLastWriteTimeUtc(image));
            await CrashWriterOperation.RunAsync(["open", image], delay, output, atWrite ? () => Changed(image, length, written) : null);
            var outcome = await JudgeAsync(image, expected, $"kill {kills} after {delay.TotalMilliseconds:F2} ms{(atWrite ? " from the first write" : string.Empty)}");
            if (output.Count == 0)
            {
                inside++;
                var key = atWrite ? outcome + " at a write" : outcome;
                outcomes[key] = outcomes.GetValueOrDefault(key) + 1;
            }
            else
            {
                span *= 0.8;
            }
        }

        TestContext.Current.TestOutputHelper?.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"whole open {whole.TotalMilliseconds:F0} ms; {kills} kills, {inside} inside the open: {string.Join(", ", outcomes.Select(o => $"{o.Key} {o.Value}"))}"));
        Assert.True(inside >= InsideKills, $"only {inside} of {kills} kills landed inside the open");
    }

    private static bool Changed(string image, long length, DateTime written)
    {
        var now = new FileInfo(image);
        return now.Length != length || now.LastWriteTimeUtc != written;
    }

    /// <summary>
    /// Checks the image after a kill and says which state it is in: "old" (every bitmap clean,
    /// with the bits it had) or "in-use" (every bitmap IN_USE). Then lets QEMU repair it and
    /// remove a bitmap, as someone cleaning up after the crash would.
    /// </summary>
    private static async Task<string> JudgeAsync(string image, Dictionary<string, (bool Enabled, List<DirtyRun> Runs)> expected, string what)
    {
        var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", image]);
        Assert.True(check.ExitCode is 0 or 3, $"{what}: qemu-img check exited {check.ExitCode}: {check.Stdout}{check.Stderr}");
        Assert.False(JsonDocument.Parse(check.Stdout).RootElement.TryGetProperty("corruptions", out _), $"{what}: {check.Stdout}");

        var listed = await QemuBitmapsAsync(image);
        Assert.True(listed.Select(b => b.Name).SequenceEqual(Names), $"{what}: qemu-img info lists the bitmaps {string.Join(", ", listed.Select(b => b.Name))}");
        var inUse = listed.Count(b => b.InUse);
        Assert.True(inUse is 0 || inUse == Names.Length, $"{what}: {inUse} of {Names.Length} bitmaps are in-use");
        if (inUse == 0)
        {
            var now = await LoadAsync(image);
            foreach (var name in Names)
            {
                Assert.Equal(expected[name].Enabled, now[name].Enabled);
                Assert.Equal(expected[name].Runs, now[name].Runs);
            }
        }

        await Peer.RunCheckedAsync("qemu-img", "check", "-q", "-r", "all", image);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--remove", image, "b2");
        var after = await Peer.RunAsync("qemu-img", ["check", image]);
        Assert.True(after.ExitCode == 0, $"{what}: after check -r all and bitmap --remove, qemu-img check exited {after.ExitCode}: {after.Stdout}{after.Stderr}");
        Assert.Equal(["b0", "b1", "b3"], (await QemuBitmapsAsync(image)).Select(b => b.Name));
        return (inUse == 0 ? "old" : "in-use") + (check.ExitCode == 3 ? " leaked" : string.Empty);
    }

    /// <summary>A 64 MiB image whose four bitmaps QEMU recorded different writes into: b0 all of them, b1 and b3 disabled part way, b2 at 64 KiB granularity.</summary>
    private static async Task CreateAsync(string image, int clusterSize)
    {
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", image, "64M");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", image, "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", image, "b1");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 192k", "-c", "write -P 0x22 10M 1M", image);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--disable", image, "b1");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "65536", image, "b2");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", image, "b3");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x33 20M 4k", "-c", "write -z 30M 64k", image);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--disable", image, "b3");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x44 60M 3M", image);
    }

    /// <summary>The bitmaps as Tidemark's codec reads them from the file, without opening the image.</summary>
    private static async Task<Dictionary<string, (bool Enabled, List<DirtyRun> Runs)>> LoadAsync(string image)
    {
        var set = await Qcow2BitmapSet.LoadAsync(ReadOnlyClusterSpace.Open(image), Ct);
        return set.Bitmaps.ToDictionary(b => b.Name, b => (b.Enabled, b.Bitmap.Runs()));
    }

    /// <summary>The bitmaps as <c>qemu-img info</c> lists them, in directory order.</summary>
    private static async Task<List<(string Name, bool InUse)>> QemuBitmapsAsync(string image)
    {
        using var info = JsonDocument.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", image));
        var list = new List<(string, bool)>();
        if (info.RootElement.GetProperty("format-specific").GetProperty("data").TryGetProperty("bitmaps", out var bitmaps))
        {
            foreach (var bitmap in bitmaps.EnumerateArray())
            {
                list.Add((bitmap.GetProperty("name").GetString()!, bitmap.GetProperty("flags").EnumerateArray().Any(f => f.GetString() == "in-use")));
            }
        }

        return list;
    }
}
