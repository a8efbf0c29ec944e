using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Image;

/// <summary>
/// Differential property over damaged qcow2 images: a seeded generator damages the header,
/// the header extensions, the refcount table and block, the L1 and L2 tables, and the bitmaps
/// extension, directory and tables of a qemu-img-made image; for each, qemu-img and tidemark
/// run check, info, map, compare and bitmap on copies of the same file. Tidemark never calls
/// an image clean that qemu-img calls corrupt or cannot open, never ends in an unhandled
/// exception, matches qemu-img's map and compare results whenever both read the image, and a
/// refused bitmap command leaves the file byte-identical.
/// </summary>
public sealed class MutatedImageDifferentialTests : IDisposable
{
    // Bounded work: the run stops after this many images or this much time, whichever is first.
    private const int MaxCases = 150;
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(60);

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private sealed record Region(string Name, long Offset, int Length);

    [Fact]
    public async Task MutatedImages_TidemarkAgreesWithQemuImgOrFailsCleanly()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("TIDEMARK_MUTATION_SEED"), out var s) ? s : 20261130;
        var pristinePath = _dir.File("seed.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", pristinePath, "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 8k", "-c", "write -z 1M 64k", "-c", "write -P 2 3M 4k", "-c", "write -z -u 2M 4k", pristinePath);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", pristinePath, "b0");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "8k", pristinePath, "b1");
        var pristine = await File.ReadAllBytesAsync(pristinePath, TestContext.Current.CancellationToken);
        var reference = _dir.File("reference.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-O", "raw", pristinePath, reference);
        var regions = Regions(pristine);

        var random = new Random(seed);
        var failures = new List<string>();
        var clock = Stopwatch.StartNew();
        var cases = 0;
        for (; cases < MaxCases && clock.Elapsed < Budget && failures.Count < 5; cases++)
        {
            var bytes = (byte[])pristine.Clone();
            var what = Mutate(bytes, regions, random);
            var label = $"seed {seed} case {cases}: {what}";
            var task = CheckOneAsync(bytes, cases, label, reference, failures);
            try
            {
                await task.WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
            }
            catch (TimeoutException)
            {
                failures.Add($"{label}: did not finish in 60 s");
            }
        }

        Assert.True(cases >= 20, $"only {cases} images in {Budget}");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private async Task CheckOneAsync(byte[] bytes, int index, string label, string reference, List<string> failures)
    {
        var path = _dir.File($"m{index}.qcow2");
        await File.WriteAllBytesAsync(path, bytes, TestContext.Current.CancellationToken);
        try
        {
            // check: never clean where qemu-img finds corruption or cannot open the image.
            var qemuCheck = await Peer.RunAsync("qemu-img", ["check", path]);
            var check = await RunAsync("image", "check", path);
            if (check.Code == 0 && qemuCheck.ExitCode is 1 or 2)
            {
                failures.Add($"{label}: tidemark check says clean, qemu-img check exits {qemuCheck.ExitCode}: {qemuCheck.Stderr.Trim()}");
            }

            // info: opens or fails with one error line.
            await RunAsync("image", "info", "--output=json", path);

            // map: equal to qemu-img's whenever both read the image.
            var qemuMap = await Peer.RunAsync("qemu-img", ["map", "--output=json", path]);
            var map = await RunAsync("image", "map", "--output=json", path);
            if (qemuMap.ExitCode == 0 && map.Code == 0 && qemuMap.Stdout != map.Out)
            {
                failures.Add($"{label}: map differs\nqemu-img:\n{qemuMap.Stdout}tidemark:\n{map.Out}");
            }

            // compare with the undamaged content: the same verdict whenever both read the image.
            var qemuCompare = await Peer.RunAsync("qemu-img", ["compare", path, reference]);
            var compare = await RunAsync("image", "compare", path, reference);
            if (qemuCompare.ExitCode is 0 or 1 && compare.Code is 0 or 1 && (qemuCompare.ExitCode != compare.Code || qemuCompare.Stdout != compare.Out))
            {
                failures.Add($"{label}: compare exits {compare.Code} '{compare.Out.Trim()}', qemu-img {qemuCompare.ExitCode} '{qemuCompare.Stdout.Trim()}'");
            }

            // bitmap: a refused command leaves the file as it was.
            var before = SHA256.HashData(await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken));
            var bitmap = await RunAsync("image", "bitmap", "--add", path, "new");
            var after = SHA256.HashData(await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken));
            if (bitmap.Code != 0 && !before.SequenceEqual(after))
            {
                failures.Add($"{label}: bitmap --add failed ({bitmap.Err.Trim()}) and changed the file");
            }
        }
        catch (Exception e) when (e is not TimeoutException)
        {
            failures.Add($"{label}: {e}");
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var run = await CliRun.RunAsync(args);
        var (code, err) = (run.ExitCode, run.Stderr);

        // A failure is one error line (check prints qemu-img's problem lines before it;
        // compare's 1 is a verdict, not an error).
        if (code != 0 && args[1] != "check" && !(args[1] == "compare" && code == 1) && (!err.StartsWith("error: ", StringComparison.Ordinal) || err.TrimEnd().Contains('\n', StringComparison.Ordinal)))
        {
            throw new InvalidOperationException($"tidemark {string.Join(' ', args)} exited {code} without one error line: {err}");
        }

        return (code, run.Stdout, err);
    }

    /// <summary>Where the metadata of the seed image lives, read from its own header.</summary>
    private static List<Region> Regions(byte[] image)
    {
        long U64(long at) => (long)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan((int)at));
        var regions = new List<Region> { new("header", 0, 104) };
        var headerLength = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(100));
        var at = headerLength;
        while (BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(at)) is var type and not 0)
        {
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(at + 4));
            regions.Add(new($"header extension 0x{type:x8}", at, 8 + Math.Min(length, 32)));
            if (type == 0x23852875)
            {
                var directory = U64(at + 8 + 16);
                var directorySize = (int)U64(at + 8 + 8);
                regions.Add(new("bitmap directory", directory, directorySize));
                regions.Add(new("bitmap table", U64(directory) & 0x00fffffffffffe00, 16));
            }

            at += 8 + ((length + 7) & ~7);
        }

        var refcountTable = U64(48);
        regions.Add(new("refcount table", refcountTable, 32));
        regions.Add(new("refcount block", U64(refcountTable), 64));
        var l1 = U64(40);
        regions.Add(new("L1 table", l1, 16));
        regions.Add(new("L2 table", U64(l1) & 0x00fffffffffffe00, 64));
        return regions;
    }

    private static string Mutate(byte[] image, List<Region> regions, Random random)
    {
        var text = new StringBuilder();
        var count = random.Next(1, 3);
        for (var i = 0; i < count; i++)
        {
            var region = regions[random.Next(regions.Count)];
            var offset = region.Offset + random.Next(region.Length);
            switch (random.Next(4))
            {
                case 0:
                    var value = (byte)random.Next(256);
                    image[offset] = value;
                    text.Append($"{region.Name} byte 0x{offset:x} = 0x{value:x2}; ");
                    break;
                case 1:
                    var bit = random.Next(8);
                    image[offset] ^= (byte)(1 << bit);
                    text.Append($"{region.Name} byte 0x{offset:x} bit {bit} flipped; ");
                    break;
                default:
                    // A whole 8-byte field, aligned, set to a value that breaks offsets and sizes.
                    var field = Math.Max(region.Offset, offset & ~7L);
                    if (field + 8 > image.Length)
                    {
                        goto case 0;
                    }

                    ulong[] interesting = [0, 1, 0x200, 0x1000, 1UL << 63, (ulong)image.Length, (ulong)image.Length + 0x1000, 0x00fffffffffff000, ulong.MaxValue];
                    var chosen = interesting[random.Next(interesting.Length)];
                    BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan((int)field), chosen);
                    text.Append($"{region.Name} u64 at 0x{field:x} = 0x{chosen:x}; ");
                    break;
            }
        }

        return text.ToString();
    }
}
