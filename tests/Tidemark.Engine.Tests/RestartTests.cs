using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats;
using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// What survives a restart of the process hosting the engine (spec §1, §6.1): domains,
/// checkpoints, the current checkpoint, and job leftovers removed; bitmaps left IN_USE by a
/// crash reported broken, never used.
/// </summary>
public sealed class RestartTests
{
    private const long Size = 8 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DefinitionStoredWithoutFormats_RawStartsQcow2IsRefused()
    {
        await using var test = await TestHost.CreateAsync();
        await test.DefineAsync("old", Size, new TestDisk("vda", "raw"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", test.ImagePath("oldq", new TestDisk("vda")), "8M");
        await test.Host.DefineAsync(test.DomainXml("oldq", new TestDisk("vda")).Replace(TestHost.Uuid, "6695eb01-f6a4-8304-79aa-97f2502e1940", StringComparison.Ordinal), Ct);
        await test.Host.DisposeAsync();

        // As definitions were stored before the disk defaults were filled in at define.
        foreach (var name in new[] { "old", "oldq" })
        {
            var stored = Path.Combine(test.StateRoot, "domains", name + ".xml");
            var xml = await File.ReadAllTextAsync(stored, Ct);
            var unstated = System.Text.RegularExpressions.Regex.Replace(xml, @"<driver [^>]*/>\s*", "");
            Assert.NotEqual(xml, unstated);
            await File.WriteAllTextAsync(stored, unstated, Ct);
        }

        await test.ReopenAfterCrashAsync();
        var raw = test.Host.LookupByName("old");
        await raw.StartAsync(Ct);
        Assert.Equal(DomainState.Running, raw.State);

        var qcow2 = test.Host.LookupByName("oldq");
        var e = await Assert.ThrowsAsync<EngineException>(() => qcow2.StartAsync(Ct));
        Assert.Equal(EngineErrorReason.UnsupportedDisk, e.Reason);
        Assert.Equal($"unsupported configuration: disk 'vda' names no format and '{test.ImagePath("oldq", new TestDisk("vda"))}' has a qcow2 header: state it in the disk's <driver type='…'/> (formats are not probed)", e.Message);
        Assert.Equal(DomainState.ShutOff, qcow2.State);
    }

    [Fact]
    public async Task DomainsCheckpointsAndCurrent_Reload()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("r", Size, new TestDisk("vda"), new TestDisk("vdb"));
        await domain.StartAsync(Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name><description>first</description></domaincheckpoint>", cancellationToken: Ct);
        test.Clock.Now += 60;
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c2</name></domaincheckpoint>", cancellationToken: Ct);
        var xml = await domain.Checkpoints.GetXmlAsync("c2", CheckpointFormatFlags.Secure, Ct);
        var domainXml = domain.GetXml(DomainFormatFlags.Secure);

        await test.RestartAsync();

        domain = test.Host.LookupByName("r");
        Assert.Equal(DomainState.ShutOff, domain.State);
        Assert.Equal(-1, domain.Id);
        Assert.Equal(Guid.Parse(TestHost.Uuid), domain.Uuid);
        Assert.Equal(domainXml, domain.GetXml(DomainFormatFlags.Secure));
        Assert.Equal(["c1", "c2"], await domain.Checkpoints.ListAsync(CheckpointListFlags.Topological, Ct));
        Assert.Equal(xml, await domain.Checkpoints.GetXmlAsync("c2", CheckpointFormatFlags.Secure, Ct));
        Assert.Equal(LibvirtCheckpointFile.EditWarning + xml, await File.ReadAllTextAsync(Path.Combine(test.StateRoot, "checkpoint", "r", "c2.xml"), Ct));

        // One unbranched chain: its leaf is current again, and the bitmaps stored at stop are valid.
        Assert.Equal("c2", domain.Checkpoints.CurrentName);
        await domain.StartAsync(Ct);
        await domain.Checkpoints.CreateAsync(await domain.Checkpoints.GetXmlAsync("c1", cancellationToken: Ct), CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c3</name></domaincheckpoint>", cancellationToken: Ct);
        Assert.Equal("c2", await domain.Checkpoints.GetParentAsync("c3", Ct));

        // A branch (redefined under c1): after a restart there is no current checkpoint, and
        // the next one is a new root.
        await domain.Checkpoints.CreateAsync(
            "<domaincheckpoint><name>b1</name><parent><name>c1</name></parent><creationTime>9</creationTime><disks><disk name='vda' checkpoint='no'/><disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>",
            CheckpointCreateFlags.Redefine,
            Ct);
        Assert.Equal("c3", domain.Checkpoints.CurrentName);
        await test.RestartAsync();
        domain = test.Host.LookupByName("r");
        Assert.Null(domain.Checkpoints.CurrentName);
        Assert.Equal(["b1", "c2"], (await domain.Checkpoints.ListChildrenAsync("c1", cancellationToken: Ct)).Order(StringComparer.Ordinal));
        Assert.Equal(["b1", "c3"], (await domain.Checkpoints.ListAsync(CheckpointListFlags.Leaves, Ct)).Order(StringComparer.Ordinal));
        Assert.Equal(["c1"], await domain.Checkpoints.ListAsync(CheckpointListFlags.Roots, Ct));
        Assert.Equal(["c1", "c2"], (await domain.Checkpoints.ListAsync(CheckpointListFlags.NoLeaves, Ct)).Order(StringComparer.Ordinal));
        Assert.Equal(["b1", "c2", "c3"], (await domain.Checkpoints.ListChildrenAsync("c1", CheckpointListFlags.Descendants, Ct)).Order(StringComparer.Ordinal));
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c4</name></domaincheckpoint>", cancellationToken: Ct);
        var error = await Assert.ThrowsAsync<EngineException>(() => domain.Checkpoints.GetParentAsync("c4", Ct));
        Assert.Equal(LibvirtErrorCode.NoDomainCheckpoint, error.Code);
    }

    [Fact]
    public async Task CheckpointFile_AsLibvirtWritesIt_Mode0600_EditWarningThenSecureXml_AndReadBack()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("w", Size, new TestDisk("vda"));
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name><description>first</description></domaincheckpoint>", cancellationToken: Ct);
        var file = Path.Combine(test.StateRoot, "checkpoint", "w", "c1.xml");
        var xml = await domain.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Secure, Ct);

        // virXMLSaveFile: mode 0600 (forced, whatever the umask), the warning, then the document.
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        }

        Assert.Equal(LibvirtCheckpointFile.EditWarning + xml, await File.ReadAllTextAsync(file, Ct));
        Assert.Contains("<domain type='kvm'>", xml, StringComparison.Ordinal);

        // A file laid out as libvirt writes it, which the engine did not write, loads as the
        // checkpoint it describes.
        await File.WriteAllTextAsync(Path.Combine(test.StateRoot, "checkpoint", "w", "c2.xml"), LibvirtCheckpointFile.EditWarning + xml.Replace("<name>c1</name>", "<name>c2</name>", StringComparison.Ordinal).Replace("<description>first</description>", "<parent>\n    <name>c1</name>\n  </parent>", StringComparison.Ordinal), Ct);
        await test.RestartAsync();
        domain = test.Host.LookupByName("w");
        Assert.Equal(["c1", "c2"], await domain.Checkpoints.ListAsync(CheckpointListFlags.Topological, Ct));
        Assert.Equal(xml, await domain.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Secure, Ct));
        Assert.Equal("c1", await domain.Checkpoints.GetParentAsync("c2", Ct));
    }

    [Theory]
    [InlineData("w", true)]
    [InlineData("vm.example-1_2", true)]
    [InlineData("has space", false)]
    [InlineData("a--b", false)]
    [InlineData("semi;colon", false)]
    public async Task DomainFile_AsLibvirtWritesIt_Mode0600_EditWarningNamingTheDomainOrItsUuid_AndReadBack(string name, bool shellSafe)
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync(name, Size, new TestDisk("vda"));
        var file = Path.Combine(test.StateRoot, "domains", name + ".xml");

        // virDomainDefSaveXML: virXMLSaveFile with the name when a shell would take it as one
        // word, else the UUID (virXMLPickShellSafeComment).
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        }

        var text = await File.ReadAllTextAsync(file, Ct);
        var warning = LibvirtDomainFile.EditWarning(shellSafe ? name : domain.Uuid.ToString("D"));
        Assert.StartsWith(warning, text, StringComparison.Ordinal);
        Assert.StartsWith("<domain type='kvm'>", text[warning.Length..], StringComparison.Ordinal);

        await test.RestartAsync();
        Assert.Equal(domain.Uuid, test.Host.LookupByName(name).Uuid);
    }

    [Fact]
    public async Task StrayTemporaryFiles_OfMetadataWrites_AreRemovedAtStart_AndNothingElse()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("t", Size, new TestDisk("vda"));
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        var checkpoints = Path.Combine(test.StateRoot, "checkpoint", "t");
        var orphan = Path.Combine(test.StateRoot, "checkpoint", "gone");
        Directory.CreateDirectory(orphan);
        await File.WriteAllTextAsync(Path.Combine(orphan, "c9.xml"), "<domaincheckpoint/>", Ct);

        // What a kill between creating and renaming leaves, partly written: named by the writer
        // itself (this process's pid, which a restarted daemon can have again) beside a
        // checkpoint file, a new one, a domain file, a job record and in the checkpoint folder
        // of a domain no longer defined; and one of a writer that has exited.
        var guid = Guid.NewGuid().ToString("N");
        string[] strays =
        [
            State.AtomicFile.TemporaryPath(Path.Combine(checkpoints, "c1.xml")),
            Path.Combine(checkpoints, $".c1.xml.{await ExitedProcessIdAsync()}.{guid}.tmp"),
            State.AtomicFile.TemporaryPath(Path.Combine(checkpoints, "c2.xml")),
            State.AtomicFile.TemporaryPath(Path.Combine(test.StateRoot, "domains", "t.xml")),
            State.AtomicFile.TemporaryPath(Path.Combine(test.StateRoot, "jobs", "t.files")),
            State.AtomicFile.TemporaryPath(Path.Combine(orphan, "c9.xml")),
        ];
        Directory.CreateDirectory(Path.Combine(test.StateRoot, "jobs"));
        foreach (var stray in strays)
        {
            await File.WriteAllTextAsync(stray, "<domaincheckpoint><na", Ct);
        }

        // Look-alikes that are not the writer's, and one of a writer still alive (pid 1): kept.
        string[] kept =
        [
            Path.Combine(checkpoints, $".c1.xml.1.{guid}.tmp"),
            Path.Combine(checkpoints, ".c1.xml.tmp"),
            Path.Combine(checkpoints, $".c1.xml.{guid}.tmp"),
            Path.Combine(checkpoints, $".c1.xml.12.{guid[..31]}.tmp"),
            Path.Combine(checkpoints, $".c1.xml.12.{guid.ToUpperInvariant()}.tmp"),
            Path.Combine(checkpoints, $"c1.xml.12.{guid}.tmp"),
            Path.Combine(checkpoints, $".c1.xml.12.{guid}.tmp.xml"),
            Path.Combine(checkpoints, "c1.xml.new"),
            Path.Combine(checkpoints, "notes.tmp"),
        ];
        foreach (var file in kept)
        {
            await File.WriteAllTextAsync(file, "someone else's", Ct);
        }

        var folder = Path.Combine(checkpoints, $".c3.xml.12.{guid}.tmp");
        Directory.CreateDirectory(folder);

        await test.ReopenAfterCrashAsync();

        Assert.All(strays, s => Assert.False(File.Exists(s), s));
        Assert.All(kept, k => Assert.True(File.Exists(k), k));
        Assert.True(Directory.Exists(folder));

        // The folder of a domain no longer defined goes whole (a transient domain's, which a
        // kill ended).
        Assert.False(Directory.Exists(orphan));
        domain = test.Host.LookupByName("t");
        Assert.Equal(["c1"], await domain.Checkpoints.ListAsync(cancellationToken: Ct));
        Assert.Equal("c1", domain.Checkpoints.CurrentName);
    }

    // The pid of a process that has exited: what a killed writer's pid is at the next start.
    private static async Task<int> ExitedProcessIdAsync()
    {
        using var process = System.Diagnostics.Process.Start("true")!;
        await process.WaitForExitAsync(Ct);
        return process.Id;
    }

    [Fact]
    public async Task MissingParentFile_MakesRelationsInconsistent_NoCurrent()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("m", Size, new TestDisk("vda"));
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c2</name></domaincheckpoint>", cancellationToken: Ct);
        File.Delete(Path.Combine(test.StateRoot, "checkpoint", "m", "c1.xml"));

        await test.RestartAsync();

        domain = test.Host.LookupByName("m");
        Assert.Null(domain.Checkpoints.CurrentName);
        Assert.Equal(["c2"], await domain.Checkpoints.ListAsync(CheckpointListFlags.Roots, Ct));

        // A root of the tree, yet its parent is still the one its definition names, as
        // qemuDomainCheckpointGetParent answers from the definition.
        Assert.Equal("c1", await domain.Checkpoints.GetParentAsync("c2", Ct));
    }

    [Fact]
    public async Task BitmapsLeftInUse_AreReportedBroken_AndCanBeDeleted()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("b", Size, vda);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);

        // QEMU crashes with the image open: every bitmap stays IN_USE.
        var image = test.ImagePath("b", vda);
        await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write 0 64k", "-c", "abort", image]);
        Assert.Contains("in-use", await Peer.RunCheckedAsync("qemu-img", "info", image), StringComparison.Ordinal);

        await domain.StartAsync(Ct);
        var c1 = await domain.Checkpoints.GetXmlAsync("c1", cancellationToken: Ct);
        var broken = await Assert.ThrowsAsync<EngineException>(() => domain.Checkpoints.CreateAsync(c1, CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct));
        Assert.Equal("checkpoint inconsistent: missing or broken bitmap 'c1' for disk 'vda'", broken.Message);
        var disk = domain.Running!.Disks[0];
        using (var closure = await domain.Running.Barrier.CloseAsync(Ct))
        {
            Assert.Equal(broken.Message, Assert.Throws<EngineException>(() => disk.GetIncrementalBitmap("c1", closure)).Message);
        }

        // No size for a broken chain, and no error either (spec §6.5).
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c1'/>", await domain.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Size, Ct));

        // Still broken after a clean stop and start: IN_USE is never cleared by storing others.
        await domain.DestroyAsync(Ct);
        Assert.Contains("in-use", await Peer.RunCheckedAsync("qemu-img", "info", image), StringComparison.Ordinal);
        await domain.StartAsync(Ct);
        Assert.False(domain.Running!.Disks[0].HasValidBitmap("c1"));

        await domain.Checkpoints.DeleteAsync("c1", cancellationToken: Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c2</name></domaincheckpoint>", cancellationToken: Ct);
        using (var closure = await domain.Running.Barrier.CloseAsync(Ct))
        {
            Assert.Equal(0, domain.Running.Disks[0].GetIncrementalBitmap("c2", closure).DirtyBitCount);
        }

        await domain.DestroyAsync(Ct);
        // The bitmap's name line, not a bare "c1", which a random temp path can hold.
        Assert.DoesNotContain("name: c1\n", await Peer.RunCheckedAsync("qemu-img", "info", image), StringComparison.Ordinal);
    }

    [Fact]
    public async Task JobLeftovers_AreRemovedAtStart()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("j", Size, new TestDisk("vda"));
        var record = domain.CreateJobRecord();
        var created = test.Directory.File("j-vda.scratch");
        var notYet = test.Directory.File("j-vdb.scratch");
        var kept = test.Directory.File("user.qcow2");
        await File.WriteAllTextAsync(kept, "", Ct);
        await record.AddAsync(created, Ct);
        await File.WriteAllTextAsync(created, "partial", Ct);
        await record.AddAsync(notYet, Ct);

        // A crash: the job never completed its record.
        await test.ReopenAfterCrashAsync();

        Assert.Equal([created], test.Host.RemovedJobFiles);
        Assert.False(File.Exists(created));
        Assert.True(File.Exists(kept));
        Assert.False(File.Exists(record.Path));

        // A completed job leaves nothing for the next start.
        var second = test.Host.LookupByName("j").CreateJobRecord();
        await second.AddAsync(created, Ct);
        await File.WriteAllTextAsync(created, "kept by the job", Ct);
        await second.CompleteAsync(Ct);
        await test.ReopenAfterCrashAsync();
        Assert.Empty(test.Host.RemovedJobFiles);
        Assert.True(File.Exists(created));
    }

    [Fact]
    public async Task TransientDomainEndedByACrash_ItsCheckpointMetadataGoes_ANewDomainOfTheNameStartsWithNone()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("t", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>t1</name></domaincheckpoint>", cancellationToken: Ct);
        await test.Host.UndefineAsync(domain, cancellationToken: Ct);
        Assert.False(domain.IsPersistent);
        var crashed = test.Host;

        await test.ReopenAfterCrashAsync();

        Assert.Empty(test.Host.ListDomains());
        Assert.False(Directory.Exists(Path.Combine(test.StateRoot, "checkpoint", "t")));
        await crashed.DisposeAsync();
        var again = await test.DefineAsync("t", Size, new TestDisk("vda"));
        Assert.Equal(0, again.Checkpoints.Count);
        await test.ReopenAfterCrashAsync();
        Assert.Equal(0, test.Host.LookupByName("t").Checkpoints.Count);
    }

    [Fact]
    public async Task Destroy_WhenTheBitmapsCannotBeStored_StopsTheDomain_AndAnIncrementalFromThemIsRefused()
    {
        await using var test = await TestHost.CreateAsync();
        var small = test.Directory.File("small");
        var vda = new TestDisk("vda", Path: Path.Combine(small, "vda.qcow2"));
        await using var mount = await TmpfsMount.SmallAsync(small, 2 << 20);
        var domain = await test.DefineAsync("f", Size, vda);
        await domain.StartAsync(Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);

        // The guest fills the file system; its write past that pauses the domain (QEMU's
        // werror=enospc), and storing c1's bitmap at the stop fails too. The domain stops all
        // the same, as libvirt's destroy does.
        var write = Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x66 0 8M", "-c", "flush", $"nbd+unix:///vda?socket={domain.Running!.SocketPath}"]);
        for (var attempt = 0; !domain.PausedByIoError || domain.State != DomainState.Paused; attempt++)
        {
            Assert.True(attempt < 300, "the write that found no space did not pause the domain");
            await Task.Delay(100, Ct);
        }

        await domain.DestroyAsync(Ct);
        await write;

        Assert.False(domain.IsActive);
        await Peer.RunCheckedAsync("mount", "-o", "remount,size=64m", small);
        await domain.StartAsync(Ct);
        var refused = await Assert.ThrowsAsync<EngineException>(() => domain.BeginBackupAsync(
            $"<domainbackup><incremental>c1</incremental><disks><disk name='vda' type='file'><target file='{test.Directory.File("inc.qcow2")}'/><driver type='qcow2'/></disk></disks></domainbackup>",
            null,
            cancellationToken: Ct));
        Assert.Equal("checkpoint inconsistent: missing or broken bitmap 'c1' for disk 'vda'", refused.Message);
        await domain.DestroyAsync(Ct);
    }
}
