using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// A connection URI libvirt's client refuses, or sends to a daemon that refuses it, gets the
/// same error from Tidemark's commands as from stock virsh (virsh's second line; Tidemark's
/// backup commands print only that one, virsh-style commands both).
/// </summary>
public sealed class ConnectionUriCommandTests(PrivateLibvirtdFixture libvirtd) : IClassFixture<PrivateLibvirtdFixture>
{
    /// <summary>
    /// An unknown driver is the host's to refuse: the client cannot tell it from a driver the
    /// host has, so virsh and Tidemark both send it to the daemon on the socket, and a real
    /// libvirtd answers that it has no such driver.
    /// </summary>
    [Fact]
    public async Task UnknownDriver_RealLibvirtdRefusesIt_SameErrorAsVirsh()
    {
        var host = await libvirtd.GetAsync();
        var uri = $"bogus:///system?socket={host.SocketPath}";
        var virsh = await Peer.RunAsync("virsh", ["-c", uri, "list"]);
        Assert.Equal(1, virsh.ExitCode);
        var expected = virsh.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)[1];
        Assert.Equal("error: no connection driver available for bogus:///system", expected);

        var list = await CliRun.RunAsync("list", "-c", uri);
        Assert.Equal($"error: failed to connect to the hypervisor\n{expected}\n", list.Stderr);
        using var dir = new TempDirectory("cli-uri");
        var run = await CliRun.RunAsync("backup", "run", "vm", "--repo", dir.File("repo"), "-c", uri);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal(expected + "\n", run.Stderr);
    }

    [Theory]
    [InlineData("bogus:///")]
    [InlineData("bogus://")]
    [InlineData("foo+unix:///system")]
    [InlineData("qemu+bogus:///system")]
    [InlineData("bogus+unix:///system?socket=/nonexistent/tidemark.sock")]
    public async Task UnknownSchemeOrTransport_SameErrorAsVirsh(string uri)
    {
        Peer.Require("virsh");
        var virsh = await Peer.RunAsync("virsh", ["-c", uri, "list"]);
        Assert.Equal(1, virsh.ExitCode);
        var virshLines = virsh.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("error: failed to connect to the hypervisor", virshLines[0]);
        var expected = virshLines[1];

        var list = await CliRun.RunAsync("list", "-c", uri);
        Assert.Equal(1, list.ExitCode);
        Assert.Equal($"error: failed to connect to the hypervisor\n{expected}\n", list.Stderr);

        using var dir = new TempDirectory("cli-uri");
        var run = await CliRun.RunAsync("backup", "run", "vm", "--repo", dir.File("repo"), "-c", uri);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal(expected + "\n", run.Stderr);
        Assert.False(Directory.Exists(dir.File("repo")), "the failed run left a repository");
    }
}
