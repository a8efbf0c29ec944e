using System.Globalization;
using System.Text.RegularExpressions;

namespace Tidemark.Engine.Tests.Differential;

/// <summary>
/// Whether two answers about the same range (a <c>base:allocation</c> block status, or the
/// chunks of a structured read) agree although they differ in one allowed way: Tidemark says
/// ZERO where qemu-nbd says plain data.
/// </summary>
/// <remarks>
/// A qcow2 cluster allocated by a write that does not fill it leaves the rest a hole in the
/// host file. Tidemark reports that rest ZERO (and reads it as an OFFSET_HOLE chunk); qemu-nbd
/// 7.2 zeroed it with fallocate when it allocated the cluster and reports data, depending on
/// what the file system says of such blocks. ZERO is a hint a server may leave out (proto.md
/// "base:allocation metadata context"), so it is allowed where qemu-nbd has plain data, when
/// the data read digests alike. Everything else must agree: the HOLE bits, every ZERO qemu-nbd
/// reports, and the range covered (all of it but the first extent's end with REQ_ONE, which
/// stops at the first change either server sees).
/// </remarks>
internal static partial class AllocationAgreement
{
    public static bool Agrees(string step, string qemu, string tidemark)
    {
        var status = step.StartsWith("[\"status\"", StringComparison.Ordinal);
        var read = step.StartsWith("[\"read\"", StringComparison.Ordinal);
        if (!(status || read) || !qemu.StartsWith("ok ", StringComparison.Ordinal) || !tidemark.StartsWith("ok ", StringComparison.Ordinal))
        {
            return false;
        }

        if (read && qemu.Split(' ')[1] != tidemark.Split(' ')[1])
        {
            return false;
        }

        var q = status ? Extents(qemu) : Chunks(qemu);
        var t = status ? Extents(tidemark) : Chunks(tidemark);
        if (q.Count == 0 || t.Count == 0 || q[0].Start != t[0].Start)
        {
            return q.Count == t.Count && q.Count == 0;
        }

        var reqOne = step.Contains("\"req_one\"", StringComparison.Ordinal);
        var end = Math.Min(q[^1].End, t[^1].End);
        if (!reqOne && q[^1].End != t[^1].End)
        {
            return false;
        }

        // Every boundary of either answer starts a piece on which both must agree.
        var cuts = q.Select(r => r.Start).Concat(t.Select(r => r.Start)).Where(c => c < end).Distinct().Order();
        foreach (var at in cuts)
        {
            var a = q.First(r => r.Start <= at && at < r.End);
            var b = t.First(r => r.Start <= at && at < r.End);
            if (a.Hole != b.Hole || (a.Zero && !b.Zero))
            {
                return false;
            }
        }

        return true;
    }

    private readonly record struct Run(long Start, long End, bool Hole, bool Zero);

    // "ok base:allocation@OFFSET [(LENGTH, FLAGS), ...]"
    private static List<Run> Extents(string outcome)
    {
        var at = long.Parse(StatusStart().Match(outcome).Groups[1].Value, CultureInfo.InvariantCulture);
        var runs = new List<Run>();
        foreach (Match m in ExtentPair().Matches(outcome))
        {
            var length = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            var flags = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
            runs.Add(new Run(at, at + length, (flags & 1) != 0, (flags & 2) != 0));
            at += length;
        }

        return runs;
    }

    // "ok DIGEST chunks [(OFFSET, LENGTH, 'data'|'hole'), ...]"; a hole chunk reads as zeroes.
    private static List<Run> Chunks(string outcome)
        => [.. ReadChunk().Matches(outcome).Select(m =>
        {
            var offset = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            return new Run(offset, offset + long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), false, m.Groups[3].Value == "hole");
        })];

    [GeneratedRegex(@"@(\d+) ")]
    private static partial Regex StatusStart();

    [GeneratedRegex(@"\((\d+), (\d+)\)")]
    private static partial Regex ExtentPair();

    [GeneratedRegex(@"\((\d+), (\d+), '(\w+)'\)")]
    private static partial Regex ReadChunk();
}
