using System.Collections.Immutable;

namespace Tidemark.Engine.Domains;

/// <summary>
/// libvirt's per-domain node counter (qemuDomainStorageIdNew, <c>nodenameindex</c>) and the
/// indexes it gave each running disk's layers, which the live XML shows
/// (<c>&lt;source … index='5'/&gt;</c>, <c>&lt;backingStore type='file' index='6'&gt;</c>) and a
/// backup's stores continue (<c>index='8'</c>). Changed under the domain's lock; read without
/// it (the live XML).
/// </summary>
/// <remarks>
/// The rules, each compared with libvirtd 9.0: a start numbers the disks from the last to the
/// first, each one's layers from the top down and a drive without media one number it does not
/// show (five disks, the first a three-layer chain, the fourth empty: the last disk 1, the empty
/// drive 2, then 3 and 4, the chain 5, 6, 7). A chain of N layers added later (hotplug, new
/// media) takes 2N - 1 numbers, its backing layers once as they are detected and every layer
/// again as it is added, and shows the last N. An eject gives the empty drive a number it shows
/// (<c>&lt;source index='11'/&gt;</c>); media that fails to open took one for nothing.
/// </remarks>
internal sealed class NodeNumbering
{
    private uint _last;
    private ImmutableDictionary<string, ImmutableArray<uint>> _disks = ImmutableDictionary<string, ImmutableArray<uint>>.Empty;

    /// <summary>The index the last store or layer took.</summary>
    public uint Last => Volatile.Read(ref _last);

    /// <summary>Each disk's indexes, its top layer's first; an ejected drive's one number. A drive empty since the start has none.</summary>
    public ImmutableDictionary<string, ImmutableArray<uint>> Disks => Volatile.Read(ref _disks);

    /// <summary>Numbers the disks of a start: <paramref name="disks"/> in domain order, each with its layer count (0: no media).</summary>
    public void Start(IEnumerable<(string Target, int Layers)> disks)
    {
        var last = 0u;
        var numbered = ImmutableDictionary.CreateBuilder<string, ImmutableArray<uint>>();
        foreach (var (target, layers) in disks.Reverse())
        {
            if (layers == 0)
            {
                last++;
                continue;
            }

            numbered[target] = [.. Enumerable.Range(1, layers).Select(i => last + (uint)i)];
            last += (uint)layers;
        }

        Volatile.Write(ref _last, last);
        Volatile.Write(ref _disks, numbered.ToImmutable());
    }

    /// <summary>A chain of <paramref name="layers"/> layers joins the running domain as <paramref name="target"/> (hotplug, new media).</summary>
    public void Add(string target, int layers)
    {
        var top = _last + (uint)layers;
        Volatile.Write(ref _disks, _disks.SetItem(target, [.. Enumerable.Range(0, layers).Select(i => top + (uint)i)]));
        Volatile.Write(ref _last, top + (uint)layers - 1);
    }

    /// <summary>The drive <paramref name="target"/> was ejected: its empty source takes a number.</summary>
    public void Eject(string target)
    {
        var index = _last + 1;
        Volatile.Write(ref _disks, _disks.SetItem(target, [index]));
        Volatile.Write(ref _last, index);
    }

    /// <summary>A transient disk's overlay, made after the start's numbering, becomes <paramref name="target"/>'s top layer.</summary>
    public void Overlay(string target)
    {
        var index = _last + 1;
        Volatile.Write(ref _disks, _disks.SetItem(target, _disks.TryGetValue(target, out var layers) ? layers.Insert(0, index) : [index]));
        Volatile.Write(ref _last, index);
    }

    /// <summary>A number taken for a node that never joined (media QEMU refused).</summary>
    public void Skip() => Volatile.Write(ref _last, _last + 1);

    /// <summary>The disk <paramref name="target"/> left the running domain.</summary>
    public void Remove(string target) => Volatile.Write(ref _disks, _disks.Remove(target));

    /// <summary>The next number, for a backup's store.</summary>
    public uint Next()
    {
        var index = _last + 1;
        Volatile.Write(ref _last, index);
        return index;
    }

    /// <summary>Goes on from what a previous host recorded (libvirt's status <c>&lt;nodename index='N'/&gt;</c> and its disks' indexes), the counter never back.</summary>
    public void Continue(uint recorded, IReadOnlyDictionary<string, ImmutableArray<uint>>? disks = null)
    {
        Volatile.Write(ref _last, Math.Max(_last, recorded));
        if (disks is { Count: > 0 })
        {
            Volatile.Write(ref _disks, disks.ToImmutableDictionary());
        }
    }
}
