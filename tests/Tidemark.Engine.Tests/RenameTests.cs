using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats;
using Tidemark.Formats.Checkpoints;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Renaming an inactive domain (virDomainRename, spec §4.5): the definition and the checkpoint
/// metadata move to the new name and stay there across restarts, the bitmaps in the images keep
/// recording for the checkpoints; refusals change nothing; a rename cut short by a kill is
/// finished or undone at the next open, never left half-way. Names that would escape the state
/// directory are refused at define and at rename.
/// </summary>
public sealed class RenameTests
{
    private const long Size = 8 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Rename_MovesDefinitionAndCheckpoints_WhichKeepTrackingAfterARestart()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("a", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "write -P 0x61 1M 64k");
        await domain.DestroyAsync(Ct);
        var before = await domain.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Secure, Ct);

        await test.Host.RenameAsync(domain, "b", Ct);

        Assert.Equal("b", domain.Name);
        Assert.Same(domain, test.Host.LookupByName("b"));
        Assert.Throws<EngineException>(() => test.Host.LookupByName("a"));
        var state = test.StateRoot;
        Assert.Equal(["b.xml"], Directory.GetFiles(Path.Combine(state, "domains")).Select(Path.GetFileName));
        Assert.Contains("<name>b</name>", await File.ReadAllTextAsync(Path.Combine(state, "domains", "b.xml"), Ct), StringComparison.Ordinal);
        Assert.Equal(["b"], Directory.GetDirectories(Path.Combine(state, "checkpoint")).Select(Path.GetFileName));
        Assert.Empty(Directory.GetFiles(Path.Combine(state, "jobs")));

        // The checkpoint itself is unchanged: its embedded domain is the domain as it was then.
        Assert.Equal(before, await domain.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Secure, Ct));
        Assert.Contains("<name>a</name>", before, StringComparison.Ordinal);

        await test.RestartAsync();
        domain = test.Host.LookupByName("b");
        Assert.Equal(Guid.Parse(TestHost.Uuid), domain.Uuid);
        Assert.Equal("c1", domain.Checkpoints.CurrentName);
        await domain.StartAsync(Ct);
        await Guest.RunAsync(domain.Running!.SocketPath, "vda", "write -P 0x62 3M 64k");
        await domain.Checkpoints.CreateAsync(before, CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct);
        Assert.Contains("size='131072'", await domain.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Size, Ct), StringComparison.Ordinal);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c2</name></domaincheckpoint>", cancellationToken: Ct);
        Assert.True(File.Exists(Path.Combine(state, "checkpoint", "b", "c2.xml")));
        Assert.Equal("c1", await domain.Checkpoints.GetParentAsync("c2", Ct));
    }

    [Fact]
    public async Task Refusals_HaveLibvirtsWords_AndChangeNothing()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("a", Size, new TestDisk("vda"));
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        var other = await test.Host.DefineAsync(test.DomainXml("o", new TestDisk("vda", Path: test.ImagePath("a", new TestDisk("vda")))).Replace(TestHost.Uuid, "6695eb01-f6a4-8304-79aa-97f2502e1940", StringComparison.Ordinal), Ct);
        var files = StateFiles(test.StateRoot);

        async Task Refused(string newName, LibvirtErrorCode code, string message)
        {
            var error = await Assert.ThrowsAsync<EngineException>(() => test.Host.RenameAsync(domain, newName, Ct));
            Assert.Equal(code, error.Code);
            Assert.Equal(message, error.Message);
            Assert.Equal(files, StateFiles(test.StateRoot));
            Assert.Equal("a", domain.Name);
        }

        await Refused("a", LibvirtErrorCode.OperationInvalid, "Requested operation is not valid: Can't rename domain to itself");
        await Refused("o", LibvirtErrorCode.OperationInvalid, "Requested operation is not valid: domain with name 'o' already exists");
        await Refused("x/y", LibvirtErrorCode.XmlError, "XML error: name x/y cannot contain '/'");
        await Refused("../../etc", LibvirtErrorCode.XmlError, "XML error: name ../../etc cannot contain '/'");
        await Refused("..", LibvirtErrorCode.XmlError, "XML error: name '..' cannot be a domain name: it names a directory");
        await Refused(".", LibvirtErrorCode.XmlError, "XML error: name '.' cannot be a domain name: it names a directory");

        await domain.StartAsync(Ct);
        files = StateFiles(test.StateRoot);
        await Refused("b", LibvirtErrorCode.OperationInvalid, "Requested operation is not valid: cannot rename active domain");
        await domain.DestroyAsync(Ct);

        // A definition file no domain was read from (it failed to parse) is not overwritten.
        await File.WriteAllTextAsync(Path.Combine(test.StateRoot, "domains", "broken.xml"), "<domain", Ct);
        files = StateFiles(test.StateRoot);
        await Refused("broken", LibvirtErrorCode.InternalError, $"internal error: cannot rename domain 'a' to 'broken': {Path.Combine(test.StateRoot, "domains", "broken.xml")} already exists");
        Assert.Equal("o", other.Name);
    }

    [Theory]
    [InlineData("x/y", "XML error: name x/y cannot contain '/'")]
    [InlineData("../../../tmp/escape", "XML error: name ../../../tmp/escape cannot contain '/'")]
    [InlineData("..", "XML error: name '..' cannot be a domain name: it names a directory")]
    [InlineData(".", "XML error: name '.' cannot be a domain name: it names a directory")]
    public async Task DefineAndCreate_RefuseNamesThatAreNotFileNames(string name, string message)
    {
        await using var test = await TestHost.CreateAsync();
        var disk = new TestDisk("vda", Path: test.Directory.File("d.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", disk.Path!, "1M");
        var xml = test.DomainXml(name, disk);
        var files = StateFiles(test.StateRoot);

        var defined = await Assert.ThrowsAsync<EngineException>(() => test.Host.DefineAsync(xml, Ct));
        Assert.Equal(message, defined.Message);
        var created = await Assert.ThrowsAsync<EngineException>(() => test.Host.CreateAsync(Formats.Domains.DomainParser.Parse(xml, cancellationToken: Ct), cancellationToken: Ct));
        Assert.Equal(message, created.Message);
        Assert.Equal(files, StateFiles(test.StateRoot));
        Assert.Empty(test.Host.ListDomains());
    }

    /// <summary>
    /// Each state a kill can leave a rename in, in the order the rename writes them; the next
    /// open finishes the rename once the new definition exists, and undoes it before.
    /// </summary>
    [Theory]
    [InlineData(1, "a")]
    [InlineData(2, "b")]
    [InlineData(3, "b")]
    [InlineData(4, "b")]
    public async Task RenameCutShort_IsFinishedOrUndone_AtTheNextOpen(int steps, string expected)
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("a", Size, new TestDisk("vda"));
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await test.Host.DisposeAsync();

        // What the rename does, step by step: the record, the new definition, the checkpoint
        // directory moved, the old definition removed (then the record, which a kill never reached).
        var state = test.StateRoot;
        Directory.CreateDirectory(Path.Combine(state, "jobs"));
        await File.WriteAllTextAsync(Path.Combine(state, "jobs", "a.rename"), "b\n", Ct);
        if (steps >= 2)
        {
            var xml = await File.ReadAllTextAsync(Path.Combine(state, "domains", "a.xml"), Ct);
            await File.WriteAllTextAsync(Path.Combine(state, "domains", "b.xml"), xml.Replace("<name>a</name>", "<name>b</name>", StringComparison.Ordinal), Ct);
        }

        if (steps >= 3)
        {
            Directory.Move(Path.Combine(state, "checkpoint", "a"), Path.Combine(state, "checkpoint", "b"));
        }

        if (steps >= 4)
        {
            File.Delete(Path.Combine(state, "domains", "a.xml"));
        }

        await test.ReopenAfterCrashAsync();

        var found = Assert.Single(test.Host.ListDomains());
        Assert.Equal(expected, found.Name);
        Assert.Equal(["c1"], await found.Checkpoints.ListAsync(CheckpointListFlags.None, Ct));
        Assert.Equal([expected + ".xml"], Directory.GetFiles(Path.Combine(state, "domains")).Select(Path.GetFileName));
        Assert.Equal([expected], Directory.GetDirectories(Path.Combine(state, "checkpoint")).Select(Path.GetFileName));
        Assert.Empty(Directory.GetFiles(Path.Combine(state, "jobs")));

        // And it works: it starts, and its checkpoint validates against the bitmaps in the image.
        await found.StartAsync(Ct);
        var c1 = await found.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Secure, Ct);
        await found.Checkpoints.CreateAsync(c1, CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct);
    }

    private static string[] StateFiles(string root) =>
        [.. Directory.GetFiles(root, "*", SearchOption.AllDirectories).Where(f => !f.EndsWith(".lock", StringComparison.Ordinal)).Select(f => Path.GetRelativePath(root, f)).Order(StringComparer.Ordinal)];
}
