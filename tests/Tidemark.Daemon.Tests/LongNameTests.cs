using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// A domain whose name is too long for its guest socket's path (run/NAME.sock would be over the
/// 108 bytes of a unix socket's path): it starts, as libvirtd starts it, on a shortened socket
/// that the running domain's XML names, and keeps it across a daemon restart.
/// </summary>
public sealed partial class LongNameTests
{
    private static CancellationToken Ct => TestDaemon.Ct;

    [Fact]
    public async Task DomainNamedBeyondASocketPath_IsServedOnTheSocketItsXmlNames_AcrossARestart()
    {
        await using var test = await TestDaemon.StartAsync();
        var name = new string('n', 200);
        var image = await test.CreateImageAsync("long", "vda");
        var xml = test.Directory.File("long.xml");
        await File.WriteAllTextAsync(xml, TestDaemon.DomainXml(name, ("vda", image)), Ct);
        await Virsh.RunOkAsync(test, "define", xml);
        Assert.Equal($"Domain '{name}' started\n\n", await Virsh.RunOkAsync(test, "start", name));

        var socket = SocketOf(await Virsh.RunOkAsync(test, "dumpxml", name));
        Assert.Equal(Path.Combine(test.StateRoot, "run"), Path.GetDirectoryName(socket));
        Assert.Matches("^n{20}-[0-9a-f]{16}\\.sock$", Path.GetFileName(socket));
        Assert.True(System.Text.Encoding.UTF8.GetByteCount(socket) <= 108, socket);
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 64k", "-c", "flush", $"nbd+unix:///vda?socket={socket}");

        await test.Daemon.DisposeAsync();
        var restarted = new TidemarkDaemon(new DaemonOptions { StateDirectory = test.StateRoot }, NullLoggerFactory.Instance);
        await restarted.StartAsync(Ct);
        try
        {
            Assert.Equal("running\n\n", await Virsh.RunOkAsync(test, "domstate", name));
            Assert.Equal(socket, SocketOf(await Virsh.RunOkAsync(test, "dumpxml", name)));
            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "read -P 0x5a 0 64k", "-c", "write -P 0x5b 64k 64k", "-c", "flush", $"nbd+unix:///vda?socket={socket}");
            await Virsh.RunOkAsync(test, "destroy", name);
            Assert.False(File.Exists(socket), "the socket outlived the domain");
        }
        finally
        {
            await restarted.DisposeAsync();
        }

        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 0 64k", "-c", "read -P 0x5b 64k 64k", image);
    }

    private static string SocketOf(string domainXml) => GuestUri().Match(domainXml) is { Success: true } m ? m.Groups[1].Value : throw new InvalidOperationException("no guest URI in the domain's XML:\n" + domainXml);

    [GeneratedRegex("uri='nbd\\+unix:///vda\\?socket=([^']+)'")]
    private static partial Regex GuestUri();
}
