using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// What needs a guest agent, on the real libvirtd and on Tidemark's daemon: <c>virsh
/// qemu-agent-command</c> (the QEMU program of the protocol), <c>domfsfreeze</c>,
/// <c>domfsthaw</c>, <c>guestinfo</c>, <c>domfsinfo</c>, <c>domhostname</c>, <c>domtime</c>,
/// on a domain shut off and running, with no agent channel and with one that no agent answers.
/// The transcripts must be equal.
/// </summary>
public sealed class GuestAgentDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private const string AgentChannel = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task AgentCommands_AreRefusedAsLibvirtdRefusesThem()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tda", RunAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh qemu-agent-command ga {\"execute\":\"guest-ping\"}\n\n[stderr]\nerror: argument unsupported: QEMU guest agent is not configured\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh domfsfreeze gc\n\n[stderr]\nerror: Unable to freeze filesystems\nerror: Guest agent is not responding: QEMU guest agent is not connected\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Requested operation is not valid: domain is not running\n", real, StringComparison.Ordinal);
        Assert.Contains("error: operation forbidden: read only access prevents virDomainQemuAgentCommand\n", real, StringComparison.Ordinal);
        Assert.Contains("error: no hostname found: no hostname found for domain ga\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        await virsh.RunAsync("define", await TwoDiskDomain.CreateAsync(directory, "ga"));
        var withChannel = await TwoDiskDomain.CreateAsync(directory, "gc");
        var xml = await File.ReadAllTextAsync(withChannel, Ct);
        await File.WriteAllTextAsync(withChannel, xml.Replace("</devices>", AgentChannel + "</devices>", StringComparison.Ordinal), Ct);
        await virsh.RunAsync("define", withChannel);
        foreach (var domain in new[] { "ga", "gc" })
        {
            await AgentCallsAsync(virsh, domain);
            await virsh.RunAsync("start", domain, "--paused");
            await AgentCallsAsync(virsh, domain);
            await virsh.RunAsync("resume", domain);
            await AgentCallsAsync(virsh, domain);
            await AgentCallsAsync(virsh, domain, "-r");
            await virsh.RunAsync("destroy", domain);
            await virsh.RunAsync("undefine", domain);
        }

        await AgentCallsAsync(virsh, "nosuch");
        return virsh.Mask(directory);
    }

    /// <param name="options">virsh's own options (<c>-r</c>: a read-only connection).</param>
    private static async Task AgentCallsAsync(VirshTranscript virsh, string domain, params string[] options)
    {
        await virsh.RunAsync([.. options, "qemu-agent-command", domain, """{"execute":"guest-ping"}"""]);
        await virsh.RunAsync([.. options, "qemu-agent-command", domain, "--timeout", "5", """{"execute":"guest-info"}"""]);
        await virsh.RunAsync([.. options, "domfsfreeze", domain]);
        await virsh.RunAsync([.. options, "domfsthaw", domain]);
        await virsh.RunAsync([.. options, "guestinfo", domain]);
        await virsh.RunAsync([.. options, "domfsinfo", domain]);
        await virsh.RunAsync([.. options, "domhostname", domain]);
        await virsh.RunAsync([.. options, "domhostname", domain, "--source", "lease"]);
        await virsh.RunAsync([.. options, "domtime", domain]);
    }
}
