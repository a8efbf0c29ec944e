using System.Text.RegularExpressions;
using Tidemark.Daemon.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// virtnbdbackup 1.9.15 against the daemon as against libvirtd: a full backup and two
/// incrementals (pull mode, checkpoints virtnbdbackup.0/1/2, the dirty bitmap read over NBD),
/// qemu-io writing through the domain's export between them; then virtnbdrestore rebuilds each
/// point, which qemu-img compare finds identical to a copy of the disk taken at that backup's
/// instant (the guest is quiet while each copy and backup is taken).
/// </summary>
public sealed class VirtNbdBackupTests
{
    private static CancellationToken Ct => TestDaemon.Ct;

    [Fact]
    public async Task FullThenTwoIncrementals_EachRestoredPointIsTheDiskAtItsInstant()
    {
        Peer.Require("virtnbdbackup");
        Peer.Require("qemu-nbd");
        await using var test = await TestDaemon.StartAsync();
        var image = await test.CreateImageAsync("nb", "vda", "32M");
        await Virsh.RunOkAsync(test, "define", await WriteAsync(test, "nb.xml", TestDaemon.DomainXml("nb", ("vda", image))));
        await Virsh.RunOkAsync(test, "start", "nb");
        var output = test.Directory.File("backup");

        await test.GuestWriteAsync("nb", "vda", "write -P 0x61 0 2M", "write -P 0x62 8M 1M");
        var instants = new List<string> { await test.CaptureAsync(image, "i0.raw") };
        await BackupAsync(test, "full", output);

        await test.GuestWriteAsync("nb", "vda", "write -P 0x71 1M 2M", "write -z 8M 64k", "write -P 0x72 20M 512k");
        instants.Add(await test.CaptureAsync(image, "i1.raw"));
        await BackupAsync(test, "inc", output);

        await test.GuestWriteAsync("nb", "vda", "write -P 0x81 0 64k", "discard 20M 256k", "write -P 0x82 30M 1M");
        instants.Add(await test.CaptureAsync(image, "i2.raw"));
        await BackupAsync(test, "inc", output);

        Assert.Equal("virtnbdbackup.0\nvirtnbdbackup.1\nvirtnbdbackup.2\n\n", await Virsh.RunOkAsync(test, "checkpoint-list", "nb", "--name", "--topological"));
        Assert.Null(test.Daemon.Host!.LookupByName("nb").Backup);

        // Every point of the chain, restored by virtnbdrestore (through a local qemu-nbd).
        await RestoreEachPointAsync(test, output, instants);

        // Without --until: the latest point.
        var latest = test.Directory.File("restore-latest");
        var last = await VirtNbdRestore.RunAsync(["-U", Uri(test), "-i", output, "-o", latest], latest, TimeSpan.FromMinutes(3));
        Assert.True(last.ExitCode == 0, last.Stdout + last.Stderr);
        var latestDisk = VirtNbdRestore.Images(latest).Single();
        Assert.Equal(0, (await Peer.RunAsync("qemu-img", ["compare", "-F", "raw", latestDisk, instants[^1]])).ExitCode);
    }

    /// <summary>
    /// <c>virtnbdrestore -c -D -N</c> defines the restored domain through the daemon from the XML
    /// virtnbdbackup saved, which is the running domain's: it carries the NBD URIs Tidemark
    /// reports under <c>&lt;metadata&gt;</c>, naming the original domain's socket. The new
    /// domain keeps none of them, and once started it reports only its own socket (a guest that
    /// followed the first URI would otherwise write to the original domain's disk).
    /// </summary>
    [Fact]
    public async Task RestoreDefine_UnderANewName_TheNewDomainNamesOnlyItsOwnSocket()
    {
        Peer.Require("virtnbdbackup");
        Peer.Require("qemu-nbd");
        await using var test = await TestDaemon.StartAsync();
        var image = await test.StartDomainAsync("nb", "write -P 0x61 0 1M");
        var output = test.Directory.File("backup");
        await BackupAsync(test, "full", output);
        var instant = await test.CaptureAsync(image, "i0.raw");

        var restored = test.Directory.File("restored");
        var restore = await VirtNbdRestore.RunAsync(["-U", Uri(test), "-i", output, "-o", restored, "-n", "-f", test.Directory.File("nbdr.sock"), "-c", "-D", "-N", "nb2"], restored, TimeSpan.FromMinutes(3));
        Assert.True(restore.ExitCode == 0, $"virtnbdrestore -c -D -N nb2: {restore.Stdout}{restore.Stderr}");
        var disk = Path.Combine(restored, Path.GetFileName(image));
        Assert.Equal(0, (await Peer.RunAsync("qemu-img", ["compare", "-F", "raw", disk, instant])).ExitCode);

        var defined = await Virsh.RunOkAsync(test, "dumpxml", "nb2", "--inactive");
        Assert.Contains($"<source file='{disk}'/>", defined, StringComparison.Ordinal);
        Assert.DoesNotContain(RunningDomainXml.Namespace, defined, StringComparison.Ordinal);

        await Virsh.RunOkAsync(test, "start", "nb2");
        var live = await Virsh.RunOkAsync(test, "dumpxml", "nb2");
        var uris = Regex.Matches(live, "uri='([^']*)'").Select(m => m.Groups[1].Value);
        Assert.Equal([$"nbd+unix:///vda?socket={test.GuestSocket("nb2")}"], uris);
    }

    /// <summary>
    /// A transient domain (<c>virsh create</c>, virDomainCreateXML) started on an image whose
    /// checkpoints' metadata is gone, its bitmaps still in the image: virtnbdbackup redefines
    /// the checkpoints from its backup folder (REDEFINE|REDEFINE_VALIDATE, libvirt-rpc.md §3)
    /// and the chain goes on, as on libvirtd 9.0; the domain and its checkpoints go when it
    /// stops.
    /// </summary>
    [Fact]
    public async Task TransientDomain_CheckpointsRedefinedFromTheBackupFolder_TheChainGoesOn()
    {
        Peer.Require("virtnbdbackup");
        Peer.Require("qemu-nbd");
        await using var test = await TestDaemon.StartAsync();
        var image = await test.StartDomainAsync("nb", "write -P 0x61 0 1M");
        var output = test.Directory.File("backup");
        var instants = new List<string> { await test.CaptureAsync(image, "i0.raw") };
        await BackupAsync(test, "full", output);
        await test.GuestWriteAsync("nb", "vda", "write -P 0x62 4M 1M");
        instants.Add(await test.CaptureAsync(image, "i1.raw"));
        await BackupAsync(test, "inc", output);

        var definition = await WriteAsync(test, "nb-inactive.xml", await Virsh.RunOkAsync(test, "dumpxml", "nb", "--inactive"));
        await Virsh.RunOkAsync(test, "destroy", "nb");
        await Virsh.RunOkAsync(test, "undefine", "nb", "--checkpoints-metadata");
        Assert.Equal($"Domain 'nb' created from {definition}\n\n", await Virsh.RunOkAsync(test, "create", definition));
        Assert.Contains("Persistent:     no\n", await Virsh.RunOkAsync(test, "dominfo", "nb"), StringComparison.Ordinal);
        Assert.Equal("", (await Virsh.RunOkAsync(test, "checkpoint-list", "nb", "--name")).Trim());

        await test.GuestWriteAsync("nb", "vda", "write -P 0x63 8M 1M");
        instants.Add(await test.CaptureAsync(image, "i2.raw"));
        await BackupAsync(test, "inc", output);
        Assert.Equal("virtnbdbackup.0\nvirtnbdbackup.1\nvirtnbdbackup.2\n\n", await Virsh.RunOkAsync(test, "checkpoint-list", "nb", "--name", "--topological"));
        await RestoreEachPointAsync(test, output, instants);

        await Virsh.RunOkAsync(test, "destroy", "nb");
        Assert.Equal("\n", await Virsh.RunOkAsync(test, "list", "--all", "--name"));
    }

    /// <summary>
    /// A domain whose name has a space and a non-ASCII letter, as libvirt allows: the disk URI
    /// its running XML reports is one qemu-io opens (the socket path percent-encoded, as
    /// RFC 3986 wants a query value), and virtnbdbackup and virtnbdrestore handle it as any.
    /// </summary>
    [Fact]
    public async Task DomainNameWithASpace_TheReportedDiskUriOpens_AndTheBackupRestores()
    {
        Peer.Require("virtnbdbackup");
        Peer.Require("qemu-nbd");
        const string name = "web 01 \u00fc";
        await using var test = await TestDaemon.StartAsync();
        var image = await test.CreateImageAsync("web", "vda");
        await Virsh.RunOkAsync(test, "define", await WriteAsync(test, "web.xml", TestDaemon.DomainXml(name, ("vda", image))));
        await Virsh.RunOkAsync(test, "start", name);

        var uri = Regex.Match(await Virsh.RunOkAsync(test, "dumpxml", name), "uri='([^']*)'").Groups[1].Value;
        Assert.Equal($"nbd+unix:///vda?socket={test.StateRoot}/run/web%2001%20%C3%BC.sock", uri);
        var write = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x61 0 1M", "-c", "flush", uri]);
        Assert.True(write.ExitCode == 0 && !write.Stderr.Contains("can't open", StringComparison.Ordinal), $"qemu-io {uri}: {write.Stdout}{write.Stderr}");

        var output = test.Directory.File("backup");
        var instants = new List<string> { await test.CaptureAsync(image, "i0.raw") };
        await BackupAsync(test, "full", output, name);
        await RestoreEachPointAsync(test, output, instants);
    }

    private static async Task RestoreEachPointAsync(TestDaemon test, string output, List<string> instants)
    {
        for (var point = 0; point < instants.Count; point++)
        {
            var restored = test.Directory.File($"restore{point}");
            var restore = await VirtNbdRestore.RunAsync(["-U", Uri(test), "-i", output, "-o", restored, "--until", $"virtnbdbackup.{point}"], restored, TimeSpan.FromMinutes(3));
            Assert.True(restore.ExitCode == 0, $"virtnbdrestore --until virtnbdbackup.{point}: {restore.Stdout}{restore.Stderr}");
            var disk = VirtNbdRestore.Images(restored).Single();
            var compare = await Peer.RunAsync("qemu-img", ["compare", "-F", "raw", disk, instants[point]]);
            Assert.True(compare.ExitCode == 0, $"point {point}: {compare.Stdout}{compare.Stderr}");
        }
    }

    private static async Task BackupAsync(TestDaemon test, string level, string output, string domain = "nb")
    {
        var result = await Peer.RunAsync(
            "virtnbdbackup",
            ["-U", Uri(test), "-d", domain, "-l", level, "-o", output, "-n", "-S", test.Directory.Path, "-f", test.Directory.File("nbd.sock")],
            timeout: TimeSpan.FromMinutes(3));
        Assert.True(result.ExitCode == 0, $"virtnbdbackup -l {level}: exit {result.ExitCode}\n{result.Stdout}{result.Stderr}");

        // virtnbdbackup ends a pull backup with an abort; the daemon then removes the scratch.
        await test.WaitForJobEndAsync(domain);
        Assert.Empty(Directory.GetFiles(test.Directory.Path, "*.partial"));
    }

    // virtnbdbackup's own form of the URI (the brief's): a local driver URI with the socket.
    private static string Uri(TestDaemon test) => $"qemu:///system?socket={test.Daemon.SocketPath}";

    private static async Task<string> WriteAsync(TestDaemon test, string name, string text)
    {
        var path = test.Directory.File(name);
        await File.WriteAllTextAsync(path, text, Ct);
        return path;
    }
}
