using System.Diagnostics;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Support;

/// <summary>A qemu-io process that holds an image open (read-write, or read-only as a VM holds a shared base image) with QEMU's locks until disposed: "another process using the image".</summary>
public sealed class QemuIoHolder : IAsyncDisposable
{
    private readonly Process _process;

    private QemuIoHolder(Process process) => _process = process;

    public static async Task<QemuIoHolder> HoldAsync(string image, string format = "qcow2", bool readOnly = false)
    {
        // qemu-io takes QEMU's locks while it opens the image, before it runs any command; so
        // once the read below has printed, the image is held. (Probing with another opener
        // could not tell this holder's locks from those of a domain already holding the image.)
        // stdbuf makes qemu-io's standard output line-buffered (a pipe is fully buffered), and
        // execs it, so the process is qemu-io itself.
        var info = new ProcessStartInfo("stdbuf", ["-oL", Peer.Require("qemu-io"), .. readOnly ? ["-r"] : Array.Empty<string>(), "-f", format, "-c", "read 0 512", "-c", "sleep 120000", image])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var holder = new QemuIoHolder(Process.Start(info)!);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            while (await holder._process.StandardOutput.ReadLineAsync(timeout.Token) is { } line)
            {
                if (line.StartsWith("read 512/512 bytes", StringComparison.Ordinal))
                {
                    return holder;
                }
            }
        }
        catch (OperationCanceledException)
        {
            await holder.DisposeAsync();
            Assert.Fail("qemu-io did not open the image within 90 s");
        }

        // Standard output ended: qemu-io exited without opening the image, and says why.
        var why = await holder._process.StandardError.ReadToEndAsync();
        await holder.DisposeAsync();
        Assert.Fail($"qemu-io exited before locking the image: {why}");
        return null!;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}
