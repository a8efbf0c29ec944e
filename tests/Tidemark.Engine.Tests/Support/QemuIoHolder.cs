using System.Diagnostics;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Support;

/// <summary>A qemu-io process that holds an image open read-write (with QEMU's locks) until disposed: "another process using the image".</summary>
public sealed class QemuIoHolder : IAsyncDisposable
{
    private readonly Process _process;

    private QemuIoHolder(Process process) => _process = process;

    public static async Task<QemuIoHolder> HoldAsync(string image, string format = "qcow2")
    {
        var info = new ProcessStartInfo(Peer.Require("qemu-io"), ["-f", format, "-c", "sleep 120000", image])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var holder = new QemuIoHolder(Process.Start(info)!);

        // Held once qemu-img itself is refused the image. A loaded machine can take long to
        // start qemu-io, so the wait is generous; a qemu-io that exited says why at once.
        var deadline = Stopwatch.StartNew();
        while ((await Peer.RunAsync("qemu-img", ["info", "-f", format, image])).ExitCode == 0)
        {
            if (holder._process.HasExited)
            {
                var why = await holder._process.StandardError.ReadToEndAsync();
                await holder.DisposeAsync();
                Assert.Fail($"qemu-io exited before locking the image: {why}");
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(90))
            {
                await holder.DisposeAsync();
                Assert.Fail("qemu-io did not lock the image within 90 s");
            }

            await Task.Delay(50);
        }

        return holder;
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
