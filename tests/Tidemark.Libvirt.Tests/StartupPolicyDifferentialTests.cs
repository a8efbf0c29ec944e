using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// A disk source's <c>startupPolicy</c> with its file missing, through stock virsh on the real
/// libvirtd and on Tidemark's daemon: <c>optional</c> starts the domain without it (a CD-ROM
/// empty, a disk gone from the running domain, both back in the definition),
/// <c>requisite</c> and <c>mandatory</c> refuse the start; <c>domblkinfo</c> of the missing file
/// is the system error libvirtd gives. The transcripts must be the same.
/// </summary>
public sealed class StartupPolicyDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task MissingSources_FollowTheirStartupPolicy_AsOnLibvirtd()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tsp", RunAsync, Ct);
        Assert.Equal(real, ours);

        // What the comparison rests on, as libvirtd printed it.
        Assert.Contains("$ virsh start opt\nDomain 'opt' started\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh start req\n\n[stderr]\nerror: Failed to start domain 'req'\nerror: Cannot access storage file 'DIR/missing.iso': No such file or directory\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Failed to open file 'DIR/missing.iso': No such file or directory", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        string I(string name) => Path.Combine(directory, name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("a.qcow2"), "16M");
        var system = $"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{I("a.qcow2")}'/><target dev='vda' bus='virtio'/></disk>";
        string Cdrom(string policy) => $"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{I("missing.iso")}' startupPolicy='{policy}'/><target dev='hdc' bus='ide'/><readonly/></disk>";
        var cases = new (string Name, string Disks)[]
        {
            ("opt", system + Cdrom("optional")),
            ("req", system + Cdrom("requisite")),
            ("mand", system + Cdrom("mandatory")),
            ("dopt", system + $"<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{I("missing.raw")}' startupPolicy='optional'/><target dev='vdb' bus='virtio'/></disk>"),
        };
        foreach (var (name, disks) in cases)
        {
            await File.WriteAllTextAsync(I(name + ".xml"), BareDomain.Xml(name, disks), Ct);
            await virsh.RunAsync("define", I(name + ".xml"));
            await virsh.RunAsync("domblkinfo", name, "--all");
            await virsh.RunAsync("start", name);
            await virsh.RunAsync("domblklist", name);
            await virsh.RunAsync("domblkinfo", name, "--all");
            if (name is "opt" or "dopt")
            {
                virsh.Note($"virsh dumpxml {name} | disks", (await LiveDisks.DumpAsync(uri, name)).Replace(directory, "DIR", StringComparison.Ordinal));
                await virsh.RunAsync("dumpxml", name, "--inactive", "--xpath", "//disk/source");
                await virsh.RunAsync("destroy", name);
            }

            await virsh.RunAsync("undefine", name);
        }

        return virsh.Mask(directory);
    }
}
