using System.Text.RegularExpressions;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Removable media through stock virsh on the real libvirtd and on Tidemark's daemon:
/// <c>change-media</c> (insert, eject, an eject of the drive just ejected, update,
/// <c>--config</c>, <c>--force</c>, a missing file, a shut-off domain) and <c>update-device</c> (the same source, another format of it, each
/// field a running disk cannot change, a new source for a disk that is not removable, an
/// unknown target, an IDE target no controller has, an interface, the persistent definition
/// replaced whole); media changed during a pull backup of another disk, a two-layer chain
/// inserted, and the node numbers the backups' stores then take; the tray events of all of it.
/// The transcripts must be equal.
/// </summary>
/// <remarks>
/// Left out: new media whose image is locked, after which libvirtd leaves the drive empty with
/// its tray open while its XML still names the old media, where Tidemark puts the old media
/// back (MediaChangeTests in the engine's tests).
/// </remarks>
public sealed partial class MediaDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ChangeMediaAndUpdateDevice_PrintTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tcm", RunAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh change-media md hdd DIR/md/cd2.iso --insert\nSuccessfully inserted media.\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Cannot access storage file 'DIR/md/nosuch.iso': No such file or directory\n", real, StringComparison.Ordinal);
        Assert.Contains("error: unsupported configuration: disk source can be changed only in removable drives\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Operation not supported: cannot modify field 'readonly' of the disk\n", real, StringComparison.Ordinal);
        Assert.Contains("error: internal error: Only 1 IDE controller is supported\n", real, StringComparison.Ordinal);
        Assert.Contains("event 'tray-change' for domain 'md' disk ide0-1-0: opened\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        var images = Path.Combine(directory, "md");
        Directory.CreateDirectory(images);
        string I(string name) => Path.Combine(images, name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("vda.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("base.qcow2"), "4M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", I("base.qcow2"), "-F", "qcow2", I("top.qcow2"));
        foreach (var cd in new[] { "cd1.iso", "cd2.iso", "cd3.iso" })
        {
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", I(cd), "4M");
        }

        var xml = I("md.xml");
        await File.WriteAllTextAsync(xml, $"""
            <domain type='qemu'>
              <name>md</name>
              <memory unit='MiB'>64</memory>
              <vcpu placement='static'>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type></os>
              <features><acpi/></features>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{I("vda.qcow2")}'/><target dev='vda' bus='virtio'/></disk>
                <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{I("cd1.iso")}'/><target dev='hdc' bus='ide'/><readonly/></disk>
                <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdd' bus='ide'/><readonly/></disk>
              </devices>
            </domain>
            """, Ct);
        await File.WriteAllTextAsync(I("hdz.xml"), (await File.ReadAllTextAsync(xml, Ct)).Replace("<name>md</name>", "<name>mz</name>", StringComparison.Ordinal).Replace("dev='hdd'", "dev='hdz'", StringComparison.Ordinal), Ct);
        await File.WriteAllTextAsync(I("pull.xml"), $"<domainbackup mode='pull'><server transport='unix' socket='{Path.Combine(directory, "md.sock")}'/><disks><disk name='vda' type='file'><scratch file='{I("s-vda")}'/></disk></disks></domainbackup>", Ct);

        // The watcher registers in its own time: define until it reports the definition.
        await using var events = FollowedProcess.Start("virsh", ["-c", uri, "event", "--all", "--loop"]);
        const string defined = "event 'lifecycle' for domain 'md': Defined Added";
        for (var attempt = 0; ; attempt++)
        {
            (await Peer.RunAsync("virsh", ["-c", uri, "define", xml])).EnsureSuccess();
            if (await events.TryWaitForLineAsync(defined, TimeSpan.FromSeconds(3)) is not null)
            {
                break;
            }

            Assert.True(attempt < 20, "virsh event reported no definition of md");
            (await Peer.RunAsync("virsh", ["-c", uri, "undefine", "md"])).EnsureSuccess();
        }

        var update = I("update.xml");
        async Task UpdateAsync(string disk, params string[] flags)
        {
            await File.WriteAllTextAsync(update, disk, Ct);
            await virsh.RunAsync(["update-device", "md", update, .. flags]);
        }

        string Cdrom(string? source, string target = "hdd", string bus = "ide", string extra = "<readonly/>")
            => $"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>{(source is null ? "" : $"<source file='{I(source)}'/>")}<target dev='{target}' bus='{bus}'/>{extra}</disk>";
        string Vda(string source = "vda.qcow2", string target = "vda", string driver = "<driver name='qemu' type='qcow2'/>", string extra = "")
            => $"<disk type='file' device='disk'>{driver}<source file='{I(source)}'/><target dev='{target}' bus='virtio'/>{extra}</disk>";

        await virsh.RunAsync("define", I("hdz.xml"));
        // Paused: a booting guest's firmware locks and closes the trays in its own time, which
        // makes libvirtd's answers a race (Tidemark has no firmware).
        await virsh.RunAsync("start", "md", "--paused");
        await virsh.RunAsync("change-media", "md", "hdd", I("cd2.iso"), "--insert");
        await virsh.RunAsync("change-media", "md", "hdd", I("cd3.iso"), "--insert");
        await virsh.RunAsync("change-media", "md", "hdc", "--eject");

        // Ejected while running, the drive keeps an empty <source index='N'/>: virsh ejects again.
        await virsh.RunAsync("change-media", "md", "hdc", "--eject");
        await virsh.RunAsync("change-media", "md", "hdd", I("cd1.iso"), "--update");
        await virsh.RunAsync("change-media", "md", "hdc", I("cd3.iso"), "--update", "--config");
        await virsh.RunAsync("change-media", "md", "vda", I("cd3.iso"), "--update");
        await virsh.RunAsync("change-media", "md", "hdd", I("nosuch.iso"), "--update");
        await virsh.RunAsync("change-media", "md", "hdd", I("cd2.iso"), "--update", "--force");
        await virsh.RunAsync("domblklist", "md");
        await virsh.RunAsync("domblklist", "md", "--inactive");

        await UpdateAsync(Vda("cd3.iso"));
        await UpdateAsync(Cdrom("cd3.iso", target: "hdz"));
        await UpdateAsync(Cdrom("cd3.iso", bus: "sata"));
        await UpdateAsync(Vda(target: "vdz"));
        await UpdateAsync(Vda());
        await UpdateAsync(Vda(driver: "<driver name='qemu' type='qcow2' cache='none'/>"));
        await UpdateAsync(Vda(extra: "<serial>abc</serial>"));
        await UpdateAsync(Vda(extra: "<readonly/>"));
        await UpdateAsync(Vda(driver: "<driver name='qemu' type='raw'/>"));
        await UpdateAsync(Cdrom("cd3.iso", extra: ""));
        await UpdateAsync(Vda("cd3.iso"), "--config");
        await virsh.RunAsync("domblklist", "md", "--inactive");
        await UpdateAsync(Vda(), "--config");
        await UpdateAsync(Vda(target: "vdq"), "--config");
        await UpdateAsync(Cdrom("cd2.iso", bus: "sata"), "--config");
        await UpdateAsync(Cdrom("cd2.iso", bus: "sata"), "--config", "--live");
        await UpdateAsync("<interface type='network'><source network='default'/></interface>");
        await virsh.RunAsync("domblklist", "md");

        // Media changes while another disk is backed up; then the stores' node numbers.
        await virsh.RunAsync("backup-begin", "md", I("pull.xml"));
        await virsh.RunAsync("backup-dumpxml", "md");
        await virsh.RunAsync("change-media", "md", "hdd", "--eject");
        await virsh.RunAsync("change-media", "md", "hdd", I("cd1.iso"), "--insert");
        await virsh.RunAsync("domjobabort", "md");
        await virsh.WaitForNoJobAsync("md");
        await UpdateAsync($"<disk type='file' device='cdrom'><driver name='qemu' type='qcow2'/><source file='{I("top.qcow2")}'/><target dev='hdc' bus='ide'/><readonly/></disk>");
        await virsh.RunAsync("backup-begin", "md", I("pull.xml"));
        await virsh.RunAsync("backup-dumpxml", "md");
        await virsh.RunAsync("domjobabort", "md");
        await virsh.WaitForNoJobAsync("md");
        await virsh.RunAsync("domblklist", "md");

        await virsh.RunAsync("destroy", "md");
        await virsh.RunAsync("start", "md");
        await virsh.RunAsync("domblklist", "md");
        await virsh.RunAsync("destroy", "md");
        await virsh.RunAsync("change-media", "md", "hdc", "--eject");
        await virsh.RunAsync("change-media", "md", "hdc", "--eject");
        await virsh.RunAsync("change-media", "md", "hdd", I("cd1.iso"), "--insert", "--live");
        await virsh.RunAsync("change-media", "md", "hdd", I("nosuch.iso"), "--update");
        await virsh.RunAsync("domblklist", "md", "--inactive");
        await virsh.RunAsync("undefine", "md");

        // The undefinition is the last event: once it is seen, every earlier one is in.
        await events.WaitForLineAsync("event 'lifecycle' for domain 'md': Undefined");
        await events.KillAsync();
        virsh.Note("virsh event --all --loop", string.Concat(events.LinesFromLast(defined).Select(l => l + "\n")));
        return Elapsed().Replace(virsh.Mask(directory), "time_elapsed: MS");
    }

    // A job-completed event's time differs from run to run.
    [GeneratedRegex(@"time_elapsed: \d+")]
    private static partial Regex Elapsed();
}
