using System.Globalization;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Differential;

/// <summary>
/// One disk image made twice, byte for byte the same: one copy is disk <c>vda</c> of a running
/// Tidemark domain, the other is served by <c>qemu-nbd</c> with the options that match what the
/// domain's guest export does. Plans of requests run against both; the replies and, once both
/// have stopped, the images must not differ.
/// </summary>
/// <remarks>
/// The qemu-nbd options: <c>--cache=writeback</c> (Tidemark writes through the page cache and
/// makes data durable on FLUSH or FUA), <c>--discard=unmap</c> (TRIM and WRITE_ZEROES without
/// NO_HOLE deallocate), <c>--detect-zeroes=off</c> (Tidemark writes the data it is given), and
/// <c>-e 4</c>, with which qemu-nbd advertises CAN_MULTI_CONN as the domain does for its
/// shared image object (formats.md §4.8).
/// </remarks>
internal sealed class TwinExports : IAsyncDisposable
{
    private readonly TestHost _test;
    private QemuNbdExport? _qemu;

    private TwinExports(TestHost test, string format, long size, Domain domain, QemuNbdExport qemu, string tidemarkImage, string qemuImage)
    {
        _test = test;
        Format = format;
        Size = size;
        Domain = domain;
        _qemu = qemu;
        TidemarkImage = tidemarkImage;
        QemuImage = qemuImage;
    }

    public string Format { get; }

    public long Size { get; }

    public Domain Domain { get; }

    public TestHost Test => _test;

    public string TidemarkImage { get; }

    public string QemuImage { get; }

    public string TidemarkUri => Guest.Uri(Domain.Running!.SocketPath, "vda");

    public string QemuUri => _qemu!.Uri;

    /// <summary>
    /// Creates both images (<paramref name="format"/>), runs the <paramref name="layout"/>
    /// qemu-io commands on each, then starts the domain and qemu-nbd. With
    /// <paramref name="backingLayout"/>, both are qcow2 overlays of one read-only qcow2 base
    /// written with those commands first.
    /// </summary>
    public static async Task<TwinExports> StartAsync(string format, long size, string[] layout, string[]? backingLayout = null)
    {
        var test = await TestHost.CreateAsync();
        try
        {
            string? backing = null;
            if (backingLayout is not null)
            {
                backing = test.Directory.File("base.qcow2");
                await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", backing, size.ToString(CultureInfo.InvariantCulture));
                await Peer.RunCheckedAsync("qemu-io", ["-f", "qcow2", .. backingLayout.SelectMany(c => (string[])["-c", c]), backing]);
            }

            var tidemarkImage = test.Directory.File($"t.{format}");
            var qemuImage = test.Directory.File($"q.{format}");
            foreach (var image in new[] { tidemarkImage, qemuImage })
            {
                var create = new List<string> { "create", "-q", "-f", format };
                if (backing is not null)
                {
                    create.AddRange(["-b", backing, "-F", "qcow2"]);
                }

                create.AddRange([image, size.ToString(CultureInfo.InvariantCulture)]);
                await Peer.RunCheckedAsync("qemu-img", [.. create]);
                if (layout.Length > 0)
                {
                    await Peer.RunCheckedAsync("qemu-io", ["-f", format, .. layout.SelectMany(c => (string[])["-c", c]), image]);
                }
            }

            var domain = await test.DefineAsync("d", size, new TestDisk("vda", format, Path: tidemarkImage));
            await domain.StartAsync(TestHost.Ct);
            var qemu = await QemuNbdExport.LaunchAsync(test.Directory.File("q.sock"), ["-f", format, "--cache=writeback", "--discard=unmap", "--detect-zeroes=off", qemuImage]);
            return new TwinExports(test, format, size, domain, qemu, tidemarkImage, qemuImage);
        }
        catch
        {
            await test.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs <paramref name="plan"/> against qemu-nbd, then against the domain, and asserts every step answered alike.</summary>
    public async Task<IReadOnlyList<string>> AssertSameAsync(NbdRequestPlan plan)
    {
        var qemu = await plan.RunAsync(QemuUri);
        var tidemark = await plan.RunAsync(TidemarkUri);
        plan.AssertSame(qemu, tidemark);
        return tidemark;
    }

    /// <summary>Stops both servers (the domain flushes and closes its image), then qemu-img compares the images and checks each.</summary>
    public async Task StopAndCompareAsync()
    {
        await Domain.DestroyAsync(TestHost.Ct);

        // qemu-nbd is killed, not asked to stop: with --cache=writeback its qcow2 metadata
        // reaches the file only on a flush, so one comes first.
        Assert.Equal(["0 [\"flush\"]: ok"], await new NbdRequestPlan().Flush().RunAsync(QemuUri));
        await _qemu!.DisposeAsync();
        _qemu = null;
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", Format, "-F", Format, QemuImage, TidemarkImage]);
        Assert.True(compare.ExitCode == 0, $"qemu-img compare: exit {compare.ExitCode}\n{compare.Stdout}{compare.Stderr}");
        if (Format == "qcow2")
        {
            await Peer.RunCheckedAsync("qemu-img", "check", QemuImage);
            await Peer.RunCheckedAsync("qemu-img", "check", TidemarkImage);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_qemu is not null)
        {
            await _qemu.DisposeAsync();
        }

        await _test.DisposeAsync();
    }
}
