using System.Diagnostics;
using Tidemark.Nbd.Protocol;

namespace Tidemark.Nbd;

/// <summary>
/// What clients did through one export, counted as QEMU's block accounting counts a device's
/// requests (the figures behind libvirt's <c>virDomainBlockStatsFlags</c>): completed reads,
/// writes and flushes, their bytes, and their total time from the moment the server took the
/// request to the moment its reply was sent. Write-zeroes count as writes of their length, as
/// QEMU's virtio-blk accounts them; trims, cache hints and block-status queries are not counted.
/// A request that failed is not counted.
/// </summary>
/// <remarks>Updated by every connection of the export at once, so each counter is updated atomically and read without a lock.</remarks>
public sealed class NbdExportStatistics
{
    private long _readOps;
    private long _readBytes;
    private long _readTicks;
    private long _writeOps;
    private long _writeBytes;
    private long _writeTicks;
    private long _flushOps;
    private long _flushTicks;

    /// <summary>The counters as they are now.</summary>
    public NbdExportCounters Read() => new(
        Interlocked.Read(ref _readOps),
        Interlocked.Read(ref _readBytes),
        Nanoseconds(Interlocked.Read(ref _readTicks)),
        Interlocked.Read(ref _writeOps),
        Interlocked.Read(ref _writeBytes),
        Nanoseconds(Interlocked.Read(ref _writeTicks)),
        Interlocked.Read(ref _flushOps),
        Nanoseconds(Interlocked.Read(ref _flushTicks)));

    /// <summary>
    /// Adds what an earlier server counted for the same export (its <see cref="Read"/>), so that the counts go on across a restart of the process
    /// serving it, as QEMU's go on across a restart of libvirtd.
    /// </summary>
    public void Continue(NbdExportCounters earlier)
    {
        Interlocked.Add(ref _readOps, earlier.ReadOperations);
        Interlocked.Add(ref _readBytes, earlier.ReadBytes);
        Interlocked.Add(ref _readTicks, Ticks(earlier.ReadNanoseconds));
        Interlocked.Add(ref _writeOps, earlier.WriteOperations);
        Interlocked.Add(ref _writeBytes, earlier.WriteBytes);
        Interlocked.Add(ref _writeTicks, Ticks(earlier.WriteNanoseconds));
        Interlocked.Add(ref _flushOps, earlier.FlushOperations);
        Interlocked.Add(ref _flushTicks, Ticks(earlier.FlushNanoseconds));
    }

    /// <summary>Counts a completed request taken at <paramref name="startedAt"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    internal void Completed(NbdCommand command, uint length, long startedAt)
    {
        switch (command)
        {
            case NbdCommand.Read:
                Add(ref _readOps, ref _readBytes, ref _readTicks, length, startedAt);
                break;
            case NbdCommand.Write or NbdCommand.WriteZeroes:
                Add(ref _writeOps, ref _writeBytes, ref _writeTicks, length, startedAt);
                break;
            case NbdCommand.Flush:
                Interlocked.Increment(ref _flushOps);
                Interlocked.Add(ref _flushTicks, Stopwatch.GetTimestamp() - startedAt);
                break;
        }
    }

    private static void Add(ref long ops, ref long bytes, ref long ticks, uint length, long startedAt)
    {
        Interlocked.Increment(ref ops);
        Interlocked.Add(ref bytes, length);
        Interlocked.Add(ref ticks, Stopwatch.GetTimestamp() - startedAt);
    }

    private static long Nanoseconds(long ticks) => (long)(ticks * (1_000_000_000.0 / Stopwatch.Frequency));

    private static long Ticks(long nanoseconds) => (long)(nanoseconds * (Stopwatch.Frequency / 1_000_000_000.0));
}

/// <summary>An export's counters at one moment (<see cref="NbdExportStatistics.Read"/>); times in nanoseconds.</summary>
public readonly record struct NbdExportCounters(
    long ReadOperations,
    long ReadBytes,
    long ReadNanoseconds,
    long WriteOperations,
    long WriteBytes,
    long WriteNanoseconds,
    long FlushOperations,
    long FlushNanoseconds)
{
    /// <summary>The sum of two exports' counters (libvirt's totals over every disk).</summary>
    public static NbdExportCounters operator +(NbdExportCounters a, NbdExportCounters b) => new(
        a.ReadOperations + b.ReadOperations,
        a.ReadBytes + b.ReadBytes,
        a.ReadNanoseconds + b.ReadNanoseconds,
        a.WriteOperations + b.WriteOperations,
        a.WriteBytes + b.WriteBytes,
        a.WriteNanoseconds + b.WriteNanoseconds,
        a.FlushOperations + b.FlushOperations,
        a.FlushNanoseconds + b.FlushNanoseconds);
}
