using System.Diagnostics;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// The real <c>tidemark</c> process stopped by a signal, as an administrator or a service
/// manager stops qemu-nbd: the images must be closed cleanly, so the persistent bitmaps that
/// recorded the guest's writes are stored and not left IN_USE.
/// </summary>
public sealed class NbdServeSignalTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(CliProcess.SIGTERM)]
    [InlineData(CliProcess.SIGINT)]
    [InlineData(CliProcess.SIGHUP)]
    public async Task Serve_StoppedBySignal_StoresBitmapsAsQemuReadsThem(int signal)
    {
        using var dir = new TempDirectory("cli-nbd-signal");
        var qcow2 = dir.File("disk.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "8M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", qcow2);
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", qcow2, "chk1");

        var socket = dir.File("tidemark.sock");
        CliRun stopped;
        await using (var serve = await CliProcess.StartAsync("nbd", "serve", "-t", "-x", "vda", "-k", socket, qcow2))
        {
            await UnixSocketListener.WaitAsync(socket, cancellationToken: TestContext.Current.CancellationToken);
            var uri = $"nbd+unix:///vda?socket={socket}";
            await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x22 2M 64k", "-c", "write -z 4M 128k", uri);
            stopped = await serve.StopAsync(signal);
        }

        Assert.True(stopped.ExitCode == 0, $"exit {stopped.ExitCode}: {stopped.Stderr}");
        Assert.False(File.Exists(socket));

        // QEMU finds the image clean and the bitmap stored (not in-use) with exactly the writes
        // that went through Tidemark: the data before the bitmap existed is not dirty.
        await Peer.RunCheckedAsync("qemu-img", "check", qcow2);
        var imageInfo = await Peer.RunCheckedAsync("qemu-img", "info", qcow2);
        Assert.DoesNotContain("in-use", imageInfo, StringComparison.Ordinal);
        Assert.Contains("name: chk1", imageInfo, StringComparison.Ordinal);
        var qemuSocket = dir.File("qemu.sock");
        var qemu = Process.Start(new ProcessStartInfo(Peer.Require("qemu-nbd"), ["-r", "-t", "-x", "vda", "-B", "chk1", "-k", qemuSocket, qcow2]) { UseShellExecute = false })!;
        try
        {
            await UnixSocketListener.WaitAsync(qemuSocket, cancellationToken: TestContext.Current.CancellationToken);
            var map = await Peer.RunCheckedAsync("nbdinfo", "--map=qemu:dirty-bitmap:chk1", $"nbd+unix:///vda?socket={qemuSocket}");
            Assert.Equal(
                "         0     2097152    0  clean\n" +
                "   2097152       65536    1  dirty\n" +
                "   2162688     2031616    0  clean\n" +
                "   4194304      131072    1  dirty\n" +
                "   4325376     4063232    0  clean\n",
                map);
        }
        finally
        {
            qemu.Kill();
            await qemu.WaitForExitAsync(Token);
            qemu.Dispose();
        }
    }
}
