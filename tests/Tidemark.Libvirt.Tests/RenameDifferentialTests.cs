using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// <c>virsh domrename</c> (virDomainRename) on the real libvirtd and on Tidemark's daemon: every
/// refusal libvirt has (an active domain, the name itself, a name taken, an empty name, a name
/// with '/', a domain that does not exist), a rename that carries a checkpoint and the
/// autostart mark along, and the lifecycle events <c>virsh event</c> sees. The transcripts
/// must be equal.
/// </summary>
public sealed class RenameDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Rename_RefusesAndRenamesAsLibvirtd_WithItsCheckpointsAndEvents()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdn", RunAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh domrename rn rn2\n\n[stderr]\nerror: Requested operation is not valid: cannot rename active domain\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh domrename rn rn2\nDomain successfully renamed\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh checkpoint-list rn2 --name\nk1\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Requested operation is not valid: domain with name 'ro' already exists\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Requested operation is not valid: Can't rename domain to itself\n", real, StringComparison.Ordinal);
        Assert.Contains("error: XML error: name x/y cannot contain '/'\n", real, StringComparison.Ordinal);
        Assert.Contains("Autostart:      enable\n", real, StringComparison.Ordinal);
        Assert.Contains(
            """
            event 'lifecycle' for domain 'rn': Undefined Renamed
            event 'lifecycle' for domain 'rn2': Defined Renamed
            event 'lifecycle' for domain 'ro': Undefined Renamed
            event 'lifecycle' for domain 'rn': Defined Renamed
            event 'lifecycle' for domain 'rn2': Undefined Removed

            """.ReplaceLineEndings("\n"),
            real,
            StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory, GuestWrite write)
    {
        var virsh = new VirshTranscript(uri);
        var xml = await TwoDiskDomain.CreateAsync(directory, "rn");
        var other = await TwoDiskDomain.CreateAsync(directory, "ro");

        // The watcher registers in its own time: define until it reports the definition
        // (undoing each definition it missed, off the record).
        await using var events = FollowedProcess.Start("virsh", ["-c", uri, "event", "--all", "--loop"]);
        const string defined = "event 'lifecycle' for domain 'rn': Defined Added";
        for (var attempt = 0; ; attempt++)
        {
            (await Peer.RunAsync("virsh", ["-c", uri, "define", xml])).EnsureSuccess();
            if (await events.TryWaitForLineAsync(defined, TimeSpan.FromSeconds(3)) is not null)
            {
                break;
            }

            Assert.True(attempt < 20, "virsh event reported no definition of rn");
            (await Peer.RunAsync("virsh", ["-c", uri, "undefine", "rn"])).EnsureSuccess();
        }

        await virsh.RunAsync("define", other);
        await virsh.RunAsync("start", "rn");
        await virsh.RunAsync("domrename", "rn", "rn2");
        await write("rn", "vda", "write -P 0x41 0 64k");
        await virsh.RunAsync("checkpoint-create-as", "rn", "k1");
        await virsh.RunAsync("destroy", "rn");
        await virsh.RunAsync("autostart", "rn");
        await virsh.RunAsync("domrename", "rn", "ro");
        await virsh.RunAsync("domrename", "rn", "rn");
        await virsh.RunAsync("domrename", "rn", "");
        await virsh.RunAsync("domrename", "rn", "x/y");
        await virsh.RunAsync("domrename", "nosuch", "z");
        await virsh.RunAsync("domrename", "rn", "rn2");
        await virsh.RunAsync("list", "--all");
        await virsh.RunAsync("list", "--all", "--autostart");
        await virsh.RunAsync("dominfo", "rn2");
        await virsh.RunAsync("checkpoint-list", "rn2", "--name");
        await virsh.RunAsync("checkpoint-info", "rn2", "k1");
        await virsh.RunAsync("checkpoint-dumpxml", "rn2", "k1", "--no-domain");
        await virsh.RunAsync("dominfo", "rn");
        await virsh.RunAsync("domrename", "--domain", "ro", "--new-name", "rn");
        await virsh.RunAsync("list", "--all", "--name");
        await virsh.RunAsync("autostart", "rn2", "--disable");
        await virsh.RunAsync("undefine", "rn2", "--checkpoints-metadata");

        // The undefinition is the last event: once it is seen, every earlier one is in.
        await events.WaitForLineAsync("event 'lifecycle' for domain 'rn2': Undefined");
        await events.KillAsync();
        virsh.Note("virsh event --all --loop", string.Concat(events.LinesFromLast(defined).Select(l => l + "\n")));
        return virsh.Mask(directory);
    }
}
