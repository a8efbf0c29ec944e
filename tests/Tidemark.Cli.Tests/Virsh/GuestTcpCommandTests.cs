using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Virsh;

/// <summary>
/// A guest on 127.0.0.1 through the native CLI: <c>tidemark daemon --guest-tcp</c> serves every
/// started domain's disks on a loopback TCP port as well, <c>start --guest-tcp</c> asks for it
/// per start; <c>domnbd</c> and the running domain's XML name both URIs, and qemu-io and nbdinfo
/// use the TCP one: the writes land in the image and the checkpoint's bitmap records them.
/// </summary>
public sealed class GuestTcpCommandTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DaemonGuestTcp_DomNbdNamesTheTcpUri_QemuIoAndNbdinfoUseIt_TheBitmapRecordsIt()
    {
        await using var daemon = await DaemonUnderTest.StartAsync("gt", "--guest-tcp");
        await DefineAsync(daemon);
        Assert.Equal((0, "Domain 'vm' started\n\n"), Outcome(await CliRun.RunAsync("start", "vm", "-c", daemon.Uri)));

        var nbd = await NbdEntriesAsync(daemon);
        Assert.Equal(["vda", "vdb"], nbd.Select(e => e.Target));
        Assert.Equal([daemon.GuestUri("vm", "vda"), daemon.GuestUri("vm", "vdb")], nbd.Select(e => e.Uri));
        Assert.All(nbd, e => Assert.Matches(TcpUri(e.Target), e.TcpUri ?? ""));
        var (vda, vdb) = (nbd[0].TcpUri!, nbd[1].TcpUri!);

        // The table gives each disk a row per URI; virsh's dumpxml shows them in the metadata.
        var table = await CliRun.RunAsync("domnbd", "vm", "-c", daemon.Uri);
        Assert.Contains($" vda      {daemon.GuestUri("vm", "vda")}\n vda      {vda}\n", table.Stdout, StringComparison.Ordinal);
        Assert.Contains($" vdb      {daemon.GuestUri("vm", "vdb")}\n vdb      {vdb}\n", table.Stdout, StringComparison.Ordinal);
        var xml = await Peer.RunCheckedAsync("virsh", "-c", daemon.Uri, "dumpxml", "vm");
        Assert.Contains($"<tidemark:disk target='vdb' uri='{daemon.GuestUri("vm", "vdb")}' tcp-uri='{vdb}'/>", xml, StringComparison.Ordinal);

        using (var info = JsonDocument.Parse(await Peer.RunCheckedAsync("nbdinfo", "--json", vdb)))
        {
            var export = info.RootElement.GetProperty("exports")[0];
            Assert.Equal(("vdb", 16L << 20, false), (export.GetProperty("export-name").GetString(), export.GetProperty("export-size").GetInt64(), export.GetProperty("is_read_only").GetBoolean()));
        }

        Assert.Equal(0, (await CliRun.RunAsync("checkpoint-create-as", "vm", "c1", "-c", daemon.Uri)).ExitCode);
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x63 1M 128k", "-c", "flush", vdb);
        var size = await CliRun.RunAsync("checkpoint-dumpxml", "vm", "c1", "--size", "--no-domain", "-c", daemon.Uri);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c1' size='0'/>", size.Stdout, StringComparison.Ordinal);
        Assert.Contains("<disk name='vdb' checkpoint='bitmap' bitmap='c1' size='131072'/>", size.Stdout, StringComparison.Ordinal);

        // The same bytes through the unix socket, then in the image once the domain is stopped;
        // the TCP listener ends with the domain.
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x63 1M 128k", "-c", "read -P 0 0 1M", daemon.GuestUri("vm", "vdb"));
        Assert.Equal(0, (await CliRun.RunAsync("destroy", "vm", "-c", daemon.Uri)).ExitCode);
        Assert.NotEqual(0, (await Peer.RunAsync("nbdinfo", ["--size", vdb])).ExitCode);
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x63 1M 128k", daemon.Directory.File("vdb.qcow2"));
    }

    [Fact]
    public async Task StartGuestTcp_PerStart_OnlyWhenAsked()
    {
        await using var daemon = await DaemonUnderTest.StartAsync("gs");
        await DefineAsync(daemon);

        // Stock virsh's start: the unix socket only.
        await Peer.RunCheckedAsync("virsh", "-c", daemon.Uri, "start", "vm");
        Assert.All(await NbdEntriesAsync(daemon), e => Assert.Null(e.TcpUri));
        Assert.DoesNotContain("tcp-uri", await Peer.RunCheckedAsync("virsh", "-c", daemon.Uri, "dumpxml", "vm"), StringComparison.Ordinal);
        Assert.Equal(0, (await CliRun.RunAsync("destroy", "vm", "-c", daemon.Uri)).ExitCode);

        Assert.Equal((0, "Domain 'vm' started\n\n"), Outcome(await CliRun.RunAsync("start", "vm", "--guest-tcp", "-c", daemon.Uri)));
        var vda = (await NbdEntriesAsync(daemon))[0].TcpUri;
        Assert.Matches(TcpUri("vda"), vda ?? "");
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x64 0 64k", "-c", "flush", vda!);
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x64 0 64k", daemon.GuestUri("vm", "vda"));

        // A domain that runs is refused as virsh refuses it, before any call.
        var again = await CliRun.RunAsync("start", "vm", "--guest-tcp", "-c", daemon.Uri);
        Assert.Equal((1, "error: Domain is already active\n"), (again.ExitCode, again.Stderr));
        Assert.Equal(0, (await CliRun.RunAsync("destroy", "vm", "-c", daemon.Uri)).ExitCode);
    }

    private static (int, string) Outcome(CliRun run) => (run.ExitCode, run.ExitCode == 0 ? run.Stdout : run.Stderr);

    private static string TcpUri(string target) => $"^nbd://127\\.0\\.0\\.1:[0-9]+/{target}$";

    private static async Task DefineAsync(DaemonUnderTest daemon)
    {
        var disks = "";
        foreach (var target in (string[])["vda", "vdb"])
        {
            var image = await daemon.CreateImageAsync(target + ".qcow2");
            disks += $"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{image}'/><target dev='{target}' bus='virtio'/></disk>";
        }

        await File.WriteAllTextAsync(daemon.Directory.File("vm.xml"), $"<domain type='kvm'><name>vm</name><memory unit='KiB'>1048576</memory><os><type arch='x86_64'>hvm</type></os><devices>{disks}</devices></domain>", Ct);
        Assert.Equal(0, (await CliRun.RunAsync("define", daemon.Directory.File("vm.xml"), "-c", daemon.Uri)).ExitCode);
    }

    private static async Task<List<NbdRow>> NbdEntriesAsync(DaemonUnderTest daemon)
    {
        var run = await CliRun.RunAsync("domnbd", "vm", "--json", "-c", daemon.Uri);
        Assert.True(run.ExitCode == 0, run.Stderr);
        using var json = JsonDocument.Parse(run.Stdout);
        return [.. json.RootElement.EnumerateArray().Select(e => new NbdRow(
            e.GetProperty("target").GetString()!,
            e.GetProperty("uri").GetString()!,
            e.TryGetProperty("tcp_uri", out var tcp) ? tcp.GetString() : null))];
    }

    private sealed record NbdRow(string Target, string Uri, string? TcpUri);
}
