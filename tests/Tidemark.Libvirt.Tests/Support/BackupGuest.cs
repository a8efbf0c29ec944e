using System.Text.RegularExpressions;
using Tidemark.Backup.Repository;
using Tidemark.Backup.Run;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests.Support;

/// <summary>A running (paused) domain of the private libvirtd with a repository of its own.</summary>
internal sealed partial class BackupGuest(PrivateLibvirtd libvirtd, LibvirtdDomain domain)
{
    private readonly List<LibvirtdDisk> _disks = [.. domain.Disks];

    public string Name => domain.Name;

    public BackupRepository Repository { get; } = new(libvirtd.File(domain.Name + "-repo"));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary><paramref name="image"/> reads as the raw <paramref name="capture"/> (qemu-img compare).</summary>
    public static async Task AssertIdenticalAsync(string format, string image, string capture)
    {
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", format, "-F", "raw", image, capture]);
        Assert.True(compare.ExitCode == 0, $"{image} vs {capture}: {compare.Stdout}{compare.Stderr}");
    }

    public static async Task<BackupGuest> DefineAsync(PrivateLibvirtd libvirtd, string prefix, int disks, bool hotplug = false) =>
        new(libvirtd, await libvirtd.DefineDomainAsync(libvirtd.NewDomainName(prefix), disks, "32M", hotplug: hotplug));

    /// <summary>
    /// Hot-plugs a fresh qcow2 virtio disk on <paramref name="target"/> into the running guest
    /// (<c>virsh attach-disk --live</c>, with the user alias that gives its QOM path); the
    /// domain must have been defined for hotplug.
    /// </summary>
    public async Task AttachDiskAsync(string target, string size)
    {
        var disk = new LibvirtdDisk(target, libvirtd.File($"{Name}-{target}.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", disk.Image, size);
        await libvirtd.VirshOkAsync("attach-disk", Name, disk.Image, target, "--driver", "qemu", "--subdriver", "qcow2", "--targetbus", "virtio", "--alias", disk.Alias, "--live");
        _disks.Add(disk);
    }

    /// <summary>
    /// The guest's writes through QEMU's block layer, then a flush of the disk: QEMU keeps
    /// qcow2 metadata (L2 tables, refcounts) in its caches until a flush, so a capture read
    /// from the image file beside a running QEMU is only consistent after one.
    /// </summary>
    public async Task WriteAsync(string target, params string[] commands)
    {
        foreach (var command in commands)
        {
            await libvirtd.GuestWriteAsync(Name, target, command);
        }

        var flush = await libvirtd.VirshOkAsync("qemu-monitor-command", Name, "--hmp", $"qemu-io -d {_disks.Single(d => d.Target == target).BackendPath} \"flush\"");
        Assert.True(flush.Trim().Length == 0, $"qemu-io flush on {Name}/{target}: {flush}");
    }

    /// <summary>Each disk as QEMU has written it, in a raw file (the guest is paused and flushed).</summary>
    public async Task<IReadOnlyDictionary<string, string>> CaptureAsync(string point)
    {
        var captures = new Dictionary<string, string>();
        foreach (var disk in _disks)
        {
            captures[disk.Target] = libvirtd.File($"{Name}-{point}-{disk.Target}.raw");
            await Peer.RunCheckedAsync("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", disk.Image, captures[disk.Target]);
        }

        return captures;
    }

    /// <summary>
    /// Removes a checkpoint's bitmap from a disk's qcow2 node behind libvirt's back, as a
    /// crash or a hand-edited image leaves it: libvirt still lists the checkpoint. The node
    /// is libvirt's <c>libvirt-INDEX-format</c>, INDEX from the live XML's source.
    /// </summary>
    public async Task RemoveBitmapAsync(string target, string bitmap)
    {
        var image = _disks.Single(d => d.Target == target).Image;
        var xml = await libvirtd.VirshOkAsync("dumpxml", Name);
        var index = Regex.Match(xml, $"<source file='{Regex.Escape(image)}' index='(\\d+)'");
        Assert.True(index.Success, xml);
        var reply = await libvirtd.VirshOkAsync("qemu-monitor-command", Name,
            "{\"execute\":\"block-dirty-bitmap-remove\",\"arguments\":{\"node\":\"libvirt-" + index.Groups[1].Value + "-format\",\"name\":\"" + bitmap + "\"}}");
        Assert.Contains("\"return\":{}", reply, StringComparison.Ordinal);
    }

    /// <summary>QEMU's block nodes hold a bitmap <paramref name="present"/> and none named <paramref name="absent"/>.</summary>
    public async Task AssertBitmapsAsync(string present, string absent)
    {
        var nodes = await libvirtd.VirshOkAsync("qemu-monitor-command", Name, "{\"execute\":\"query-named-block-nodes\"}");
        Assert.Contains($"\"{present}\"", nodes, StringComparison.Ordinal);
        Assert.DoesNotContain($"\"{absent}\"", nodes, StringComparison.Ordinal);
    }

    public Task<BackupManifest> BackupAsync(LevelRequest level, List<string> lines) =>
        BackupRunner.RunAsync(
            new BackupRunOptions
            {
                Domain = Name,
                Repository = Repository,
                ConnectionUri = libvirtd.Uri,
                Level = level,
                WorkDirectory = libvirtd.Directory.Path,
                Report = lines.Add,
            },
            Ct);

    /// <summary>
    /// libvirt keeps exactly <paramref name="checkpoints"/> for the domain and runs no job
    /// (no backup, domjobinfo "None"), and the backup's work directory is gone.
    /// </summary>
    public async Task AssertHostCleanAsync(IReadOnlyList<string> checkpoints)
    {
        var listed = await libvirtd.VirshOkAsync("checkpoint-list", Name, "--name");
        Assert.Equal(checkpoints, listed.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        var job = await libvirtd.VirshOkAsync("domjobinfo", Name);
        Assert.Matches(JobNone(), job);
        var backup = await libvirtd.VirshAsync("backup-dumpxml", Name);
        Assert.NotEqual(0, backup.ExitCode);
        Assert.Contains("no domain backup job", backup.Stderr, StringComparison.Ordinal);
        Assert.Empty(Directory.GetDirectories(libvirtd.Directory.Path, "tmb-*"));
        Assert.False(File.Exists(Repository.PendingPath(Name)), "a pending record was left in the repository");
    }

    [GeneratedRegex(@"^Job type:\s+None\s*$", RegexOptions.Multiline)]
    private static partial Regex JobNone();
}
