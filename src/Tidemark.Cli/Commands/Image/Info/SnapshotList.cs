using System.Globalization;
using System.Text;
using System.Text.Json;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Info;

/// <summary>
/// The internal snapshots as qemu-img info 7.2 prints them: the "Snapshot list:" table of
/// bdrv_snapshot_dump (fixed-width columns, local time, the guest clock as hh:mm:ss.mmm) and
/// the <c>snapshots</c> array of SnapshotInfo in the JSON printer's member order.
/// </summary>
internal static class SnapshotList
{
    private const long NanosecondsPerSecond = 1_000_000_000;

    public static void AppendHuman(StringBuilder text, IReadOnlyList<Qcow2Snapshot> snapshots)
    {
        var c = CultureInfo.InvariantCulture;
        text.Append("Snapshot list:\n");
        text.Append(c, $"{"ID",-10}{"TAG",-17}{"VM SIZE",8}{"DATE",20}{"VM CLOCK",13}{"ICOUNT",11}\n");
        foreach (var s in snapshots)
        {
            var date = DateTimeOffset.FromUnixTimeSeconds(s.DateSeconds).ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", c);
            var seconds = s.VmClockNanoseconds / NanosecondsPerSecond;
            var clock = string.Create(c, $"{seconds / 3600:00}:{seconds / 60 % 60:00}:{seconds % 60:00}.{s.VmClockNanoseconds / 1_000_000 % 1000:000}");
            var icount = s.Icount is { } i ? ((long)i).ToString(c) : string.Empty;
            text.Append(c, $"{s.Id,-9} {s.Name,-16} {ImageArguments.HumanSize((long)s.VmStateSize),8}{date,20}{clock,13}{icount,11}\n");
        }
    }

    public static void WriteJson(Utf8JsonWriter w, IReadOnlyList<Qcow2Snapshot> snapshots)
    {
        w.WriteStartArray("snapshots");
        foreach (var s in snapshots)
        {
            w.WriteStartObject();
            if (s.Icount is { } icount)
            {
                w.WriteNumber("icount", (long)icount);
            }

            w.WriteNumber("vm-clock-nsec", s.VmClockNanoseconds % NanosecondsPerSecond);
            w.WriteString("name", s.Name);
            w.WriteNumber("date-sec", s.DateSeconds);
            w.WriteNumber("date-nsec", s.DateNanoseconds);
            w.WriteNumber("vm-clock-sec", s.VmClockNanoseconds / NanosecondsPerSecond);
            w.WriteString("id", s.Id);
            w.WriteNumber("vm-state-size", (long)s.VmStateSize);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }
}
