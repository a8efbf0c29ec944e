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
        // The probe below takes QEMU's locks for an instant; a qemu-io starting in that instant
        // is refused the image and exits. That is the probe's doing, not the test's: start again.
        for (var attempt = 1; ; attempt++)
        {
            var (holder, refused) = await TryHoldAsync(image, format, readOnly);
            if (holder is not null)
            {
                return holder;
            }

            if (attempt == 5 || !refused!.Contains("Failed to get", StringComparison.Ordinal))
            {
                Assert.Fail($"qemu-io exited before locking the image: {refused}");
            }
        }
    }

    private static async Task<(QemuIoHolder? Holder, string? Refused)> TryHoldAsync(string image, string format, bool readOnly)
    {
        var info = new ProcessStartInfo(Peer.Require("qemu-io"), [.. readOnly ? ["-r"] : Array.Empty<string>(), "-f", format, "-c", "sleep 120000", image])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var holder = new QemuIoHolder(Process.Start(info)!);

        // Held once qemu-img itself is refused the image (read-only: once a writer is refused,
        // since a read-only holder denies only writing). A loaded machine can take long to
        // start qemu-io, so the wait is generous; a qemu-io that exited says why at once.
        var deadline = Stopwatch.StartNew();
        string[] probe = readOnly ? ["-f", format, "-c", "flush", image] : ["info", "-f", format, image];
        while ((await Peer.RunAsync(readOnly ? "qemu-io" : "qemu-img", probe)).ExitCode == 0)
        {
            if (holder._process.HasExited)
            {
                var why = await holder._process.StandardError.ReadToEndAsync();
                await holder.DisposeAsync();
                return (null, why);
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(90))
            {
                await holder.DisposeAsync();
                Assert.Fail("qemu-io did not lock the image within 90 s");
            }

            await Task.Delay(50);
        }

        return (holder, null);
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
