using System.Globalization;
using System.Runtime.InteropServices;
using Tidemark.Remote.Protocol;

namespace Tidemark.Daemon;

/// <summary>
/// The host as virNodeGetInfo describes it, read where libvirt reads it on Linux
/// (virHostCPUGetInfoPopulateLinux, virHostMemGetInfo): the machine name, the memory of the
/// NUMA nodes (the whole of /proc/meminfo when the host has no NUMA information), the online
/// CPUs, the first "cpu MHz" of /proc/cpuinfo, and the topology from sysfs, which libvirt
/// reports as one node, one socket and one core per CPU when its product is not the CPU count.
/// </summary>
internal static class HostNode
{
    private const string SysCpu = "/sys/devices/system/cpu";
    private const string SysNode = "/sys/devices/system/node";

    public static NodeInfo Read()
    {
        var cpus = OnlineCpus();
        var (nodes, sockets, cores, threads) = Topology(cpus);
        if (nodes * sockets * cores * threads != cpus.Count)
        {
            (nodes, sockets, cores, threads) = (1, 1, cpus.Count, 1);
        }

        return new NodeInfo(Machine(), MemoryKiB(), cpus.Count, Mhz(), nodes, sockets, cores, threads);
    }

    private static string Machine() =>
        TryRead("/proc/sys/kernel/arch")?.Trim() is { Length: > 0 } arch ? arch : RuntimeInformation.OSArchitecture switch
        {
            Architecture.X64 => "x86_64",
            Architecture.Arm64 => "aarch64",
            Architecture.X86 => "i686",
            var other => other.ToString().ToLowerInvariant(),
        };

    /// <summary>The sum of the NUMA nodes' MemTotal, or /proc/meminfo's, in KiB.</summary>
    private static ulong MemoryKiB()
    {
        var nodes = Directory.Exists(SysNode) ? Directory.GetDirectories(SysNode, "node*") : [];
        var total = nodes.Select(n => MemTotal(TryRead(Path.Combine(n, "meminfo")))).Sum(v => (decimal)v);
        return total > 0 ? (ulong)total : MemTotal(TryRead("/proc/meminfo"));
    }

    /// <summary>The "MemTotal: N kB" value of a meminfo file ("Node 0 MemTotal: N kB" in a node's).</summary>
    private static ulong MemTotal(string? meminfo)
    {
        foreach (var line in (meminfo ?? "").Split('\n'))
        {
            var at = line.IndexOf("MemTotal:", StringComparison.Ordinal);
            if (at >= 0 && ulong.TryParse(line[(at + "MemTotal:".Length)..].Replace("kB", "", StringComparison.Ordinal).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var kib))
            {
                return kib;
            }
        }

        return 0;
    }

    /// <summary>The integer part of the first "cpu MHz" line, as libvirt parses it; 0 when there is none.</summary>
    private static int Mhz()
    {
        foreach (var line in (TryRead("/proc/cpuinfo") ?? "").Split('\n'))
        {
            if (line.StartsWith("cpu MHz", StringComparison.Ordinal) && line.IndexOf(':', StringComparison.Ordinal) is var colon and > 0)
            {
                var digits = new string([.. line[(colon + 1)..].Trim().TakeWhile(char.IsAsciiDigit)]);
                return int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var mhz) ? mhz : 0;
            }
        }

        return 0;
    }

    private static List<int> OnlineCpus()
    {
        var list = TryRead(Path.Combine(SysCpu, "online"))?.Trim();
        var cpus = new List<int>();
        foreach (var range in (list ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var bounds = range.Split('-');
            if (int.TryParse(bounds[0], NumberStyles.None, CultureInfo.InvariantCulture, out var first)
                && int.TryParse(bounds[^1], NumberStyles.None, CultureInfo.InvariantCulture, out var last))
            {
                for (var cpu = first; cpu <= last; cpu++)
                {
                    cpus.Add(cpu);
                }
            }
        }

        return cpus.Count > 0 ? cpus : [.. Enumerable.Range(0, Environment.ProcessorCount)];
    }

    /// <summary>
    /// Nodes holding CPUs, and the most sockets in a node, cores in a socket and threads in a
    /// core, from each online CPU's node, package and core id.
    /// </summary>
    private static (int Nodes, int Sockets, int Cores, int Threads) Topology(List<int> cpus)
    {
        var nodeOf = new Dictionary<int, int>();
        if (Directory.Exists(SysNode))
        {
            foreach (var node in Directory.GetDirectories(SysNode, "node*"))
            {
                if (int.TryParse(Path.GetFileName(node)["node".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var id))
                {
                    foreach (var cpu in Directory.GetFileSystemEntries(node, "cpu*"))
                    {
                        if (int.TryParse(Path.GetFileName(cpu)["cpu".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var cpuId))
                        {
                            nodeOf[cpuId] = id;
                        }
                    }
                }
            }
        }

        var placed = cpus.Select(cpu => (
            Node: nodeOf.GetValueOrDefault(cpu),
            Socket: ReadInt(Path.Combine(SysCpu, $"cpu{cpu}", "topology", "physical_package_id")),
            Core: ReadInt(Path.Combine(SysCpu, $"cpu{cpu}", "topology", "core_id")))).ToList();
        var nodes = placed.Select(p => p.Node).Distinct().Count();
        var sockets = placed.GroupBy(p => p.Node).Max(g => g.Select(p => p.Socket).Distinct().Count());
        var cores = placed.GroupBy(p => (p.Node, p.Socket)).Max(g => g.Select(p => p.Core).Distinct().Count());
        var threads = placed.GroupBy(p => (p.Node, p.Socket, p.Core)).Max(g => g.Count());
        return (nodes, sockets, cores, threads);
    }

    private static int ReadInt(string path) =>
        int.TryParse(TryRead(path)?.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) ? value : 0;

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
