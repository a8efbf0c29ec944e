using System.Text;
using System.Text.Json.Nodes;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests.Support;

/// <summary>
/// A push backup's target image as qemu-img describes it (info, map, check), so that two hosts'
/// targets of the same backup can be compared once what must differ is masked (<see cref="DescribeAsync"/>).
/// </summary>
/// <param name="Path">The target file.</param>
/// <param name="Format">The target's format, as the backup document names it.</param>
internal sealed record PushTarget(string Path, string Format)
{
    /// <summary>
    /// The target alone, without its backing file: an incremental target names the live disk
    /// (spec §6.10), which the running domain holds locked and which has moved on since.
    /// </summary>
    public string Alone => Format == "qcow2"
        ? $"json:{{\"driver\":\"qcow2\",\"backing\":null,\"file\":{{\"driver\":\"file\",\"filename\":\"{Path}\"}}}}"
        : $"json:{{\"driver\":\"raw\",\"file\":{{\"driver\":\"file\",\"filename\":\"{Path}\"}}}}";

    /// <summary>
    /// qemu-img info, map and check of the target, <paramref name="directory"/> masked as DIR.
    /// Dropped as what two hosts lay out differently without a reader seeing it: info's
    /// <c>actual-size</c> (blocks the file system gave the file), map's host <c>offset</c>
    /// (which cluster of the file holds which guest cluster: QEMU copies front to back, Tidemark
    /// with several copies in flight; ranges split only by it are merged again), check's
    /// <c>image-end-offset</c> and <c>fragmented-clusters</c> (the same layout seen twice), and
    /// check's <c>allocated-clusters</c>, which the map shows range by range.
    /// </summary>
    /// <param name="asQemuWroteIt">
    /// The target is QEMU's: in a target without a backing file (nothing can show through it),
    /// a range that reads as zeroes is shown as a hole however QEMU recorded it. QEMU's
    /// block-copy writes what the disk's block status says, not what its bytes are: it copies
    /// a range the disk allocates as data even where it reads as zeroes (the first 4 KiB of a
    /// raw disk qemu-img created), it creates a raw target with its first 4 KiB allocated
    /// (block/file-posix.c, allocate_first_block, for its alignment probing), and write-zeroes every range the disk reads as zero, which
    /// its qcow2 driver records with the zero flag even over an unallocated cluster of an image
    /// without a backing file (block/qcow2-cluster.c, zero_in_l2_slice). Tidemark leaves both
    /// as holes. Tidemark's own targets are always described as they are, so a Tidemark target
    /// that is not sparse (zeroes written as data) or that lets a backing file show through
    /// still differs.
    /// </param>
    public async Task<string> DescribeAsync(string directory, bool asQemuWroteIt)
    {
        var text = new StringBuilder();
        text.Append("$ qemu-img info ").Append(System.IO.Path.GetFileName(Path)).Append('\n');
        var info = await Peer.RunAsync("qemu-img", ["info", "-U", "--output=json", "-f", Format, Path]);
        text.Append(info.ExitCode == 0 ? Drop(info.Stdout, "actual-size") : info.Stderr);
        var backed = info.Stdout.Contains("\"backing-filename\"", StringComparison.Ordinal);

        text.Append("$ qemu-img map ").Append(System.IO.Path.GetFileName(Path)).Append('\n');
        var map = await Peer.RunAsync("qemu-img", ["map", "-U", "--output=json", Alone]);
        text.Append(map.ExitCode == 0 ? await MergedMapAsync(map.Stdout, asQemuWroteIt && !backed) : map.Stderr);

        text.Append("$ qemu-img check ").Append(System.IO.Path.GetFileName(Path)).Append('\n');
        var check = await Peer.RunAsync("qemu-img", ["check", "-U", "--output=json", Alone]);
        text.Append(check.ExitCode == 0 ? Drop(check.Stdout, "image-end-offset", "fragmented-clusters", "allocated-clusters", "filename") : check.Stdout + check.Stderr)
            .Append("[exit ").Append(check.ExitCode).Append("]\n");
        return text.ToString().Replace(directory, "DIR", StringComparison.Ordinal);
    }

    /// <summary>qemu-img compare of this target with <paramref name="other"/> (each without its backing file): null when they read the same.</summary>
    public async Task<string?> CompareAsync(PushTarget other)
    {
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-U", Alone, other.Alone]);
        return compare.ExitCode == 0 ? null : $"{Path} vs {other.Path}: {compare.Stdout}{compare.Stderr}";
    }

    private static string Drop(string json, params string[] names)
    {
        var node = JsonNode.Parse(json)!;
        DropIn(node, names);
        return node.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    private static void DropIn(JsonNode? node, string[] names)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var name in names)
                {
                    o.Remove(name);
                }

                foreach (var (_, child) in o)
                {
                    DropIn(child, names);
                }

                break;
            case JsonArray a:
                foreach (var child in a)
                {
                    DropIn(child, names);
                }

                break;
        }
    }

    private async Task<string> MergedMapAsync(string json, bool zeroesAsHoles)
    {
        var ranges = new List<(long Start, long Length, string Kind)>();
        foreach (var entry in JsonNode.Parse(json)!.AsArray())
        {
            var start = entry!["start"]!.GetValue<long>();
            var length = entry["length"]!.GetValue<long>();
            var present = entry["present"]!.GetValue<bool>();
            var zero = entry["zero"]!.GetValue<bool>();
            var data = entry["data"]!.GetValue<bool>();
            if (zeroesAsHoles && (zero || await ReadsZeroesAsync(start, length)))
            {
                // A raw file has no holes to tell apart: every range of it is present.
                (present, zero, data) = (Format == "raw", true, false);
            }

            var kind = $"depth {entry["depth"]} present {(present ? "true" : "false")} zero {(zero ? "true" : "false")} data {(data ? "true" : "false")}";
            if (ranges.Count > 0 && ranges[^1].Kind == kind && ranges[^1].Start + ranges[^1].Length == start)
            {
                ranges[^1] = ranges[^1] with { Length = ranges[^1].Length + length };
            }
            else
            {
                ranges.Add((start, length, kind));
            }
        }

        return string.Concat(ranges.Select(r => $"{r.Start} +{r.Length}: {r.Kind}\n"));
    }

    private async Task<bool> ReadsZeroesAsync(long start, long length)
    {
        var read = await Peer.RunAsync("qemu-io", ["-r", "-U", "-c", $"read -q -P 0 {start} {length}", Alone]);
        var differs = read.Stdout.Contains("Pattern verification failed", StringComparison.Ordinal);
        Assert.True(read.ExitCode == 0 || differs, read.Stdout + read.Stderr);
        return !differs;
    }
}
