using System.Globalization;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh;

/// <summary>virsh's words for libvirt's enumerations and its number formats.</summary>
internal static class VirshText
{
    public static string State(DomainState state) => state switch
    {
        DomainState.NoState => "no state",
        DomainState.Running => "running",
        DomainState.Blocked => "idle",
        DomainState.Paused => "paused",
        DomainState.Shutdown => "in shutdown",
        DomainState.Shutoff => "shut off",
        DomainState.Crashed => "crashed",
        DomainState.PmSuspended => "pmsuspended",
        _ => "unknown",
    };

    private static readonly string[] RunningReasons = ["unknown", "booted", "migrated", "restored", "from snapshot", "unpaused", "migration canceled", "save canceled", "event wakeup", "crashed", "post-copy", "post-copy failed"];
    private static readonly string[] PausedReasons = ["unknown", "user", "migrating", "saving", "dumping", "I/O error", "watchdog", "from snapshot", "shutting down", "creating snapshot", "crashed", "starting up", "post-copy", "post-copy failed", "api error"];
    private static readonly string[] ShutdownReasons = ["unknown", "user"];
    private static readonly string[] ShutoffReasons = ["unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot", "daemon"];

    /// <summary>The reason virsh prints after <c>domstate --reason</c>.</summary>
    public static string Reason(DomainState state, int reason)
    {
        var table = state switch
        {
            DomainState.Running => RunningReasons,
            DomainState.Paused => PausedReasons,
            DomainState.Shutdown => ShutdownReasons,
            DomainState.Shutoff => ShutoffReasons,
            _ => ["unknown"],
        };
        return reason >= 0 && reason < table.Length ? table[reason] : "unknown";
    }

    public static string JobType(DomainJobType type) => type switch
    {
        DomainJobType.None => "None",
        DomainJobType.Bounded => "Bounded",
        DomainJobType.Unbounded => "Unbounded",
        DomainJobType.Completed => "Completed",
        DomainJobType.Failed => "Failed",
        DomainJobType.Cancelled => "Cancelled",
        _ => "Unknown",
    };

    private static readonly string[] Operations = ["Unknown", "Start", "Save", "Restore", "Incoming migration", "Outgoing migration", "Snapshot", "Snapshot revert", "Dump", "Backup", "Snapshot delete"];

    public static string Operation(long operation) => operation >= 0 && operation < Operations.Length ? Operations[operation] : "Unknown";

    private static readonly string[][] LifecycleDetails =
    [
        ["Added", "Updated", "Renamed", "Snapshot"],
        ["Removed", "Renamed"],
        ["Booted", "Migrated", "Restored", "Snapshot", "Event wakeup"],
        ["Paused", "Migrated", "I/O Error", "Watchdog", "Restored", "Snapshot", "API error", "Post-copy", "Post-copy Error"],
        ["Unpaused", "Migrated", "Snapshot", "Post-copy", "Post-copy Error"],
        ["Shutdown", "Destroyed", "Crashed", "Migrated", "Saved", "Failed", "Snapshot", "Daemon"],
        ["Finished", "On guest request", "On host request"],
        ["Memory", "Disk"],
        ["Panicked", "Crashloaded"],
    ];

    private static readonly string[] LifecycleEvents = ["Defined", "Undefined", "Started", "Suspended", "Resumed", "Stopped", "Shutdown", "PMSuspended", "Crashed"];

    public static string LifecycleEvent(DomainLifecycleEvent e) => (int)e >= 0 && (int)e < LifecycleEvents.Length ? LifecycleEvents[(int)e] : "unknown";

    public static string LifecycleDetail(DomainLifecycleEvent e, int detail) =>
        (int)e >= 0 && (int)e < LifecycleDetails.Length && detail >= 0 && detail < LifecycleDetails[(int)e].Length ? LifecycleDetails[(int)e][detail] : "unknown";

    /// <summary>vshPrettyCapacity with virsh's "%-.3lf %s": the value in the largest binary unit below it.</summary>
    public static string Capacity(ulong bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        var value = (double)bytes;
        var unit = 0;
        while (unit < units.Length - 1 && bytes >= 1UL << (10 * (unit + 1)))
        {
            unit++;
        }

        value /= Math.Pow(1024, unit);
        return string.Create(CultureInfo.InvariantCulture, $"{value:F3} {units[unit]}");
    }

    /// <summary>A checkpoint's creation time as virsh prints it: local time, "%Y-%m-%d %H:%M:%S %z".</summary>
    public static string CreationTime(long unixSeconds)
    {
        var local = TimeZoneInfo.ConvertTime(DateTimeOffset.FromUnixTimeSeconds(unixSeconds), TimeZoneInfo.Local);
        var offset = local.Offset;
        var sign = offset < TimeSpan.Zero ? '-' : '+';
        offset = offset.Duration();
        return string.Create(CultureInfo.InvariantCulture, $"{local:yyyy-MM-dd HH:mm:ss} {sign}{offset.Hours:D2}{offset.Minutes:D2}");
    }
}
