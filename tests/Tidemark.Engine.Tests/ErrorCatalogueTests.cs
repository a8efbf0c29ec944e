using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats;
using Tidemark.Formats.Checkpoints;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Every error of libvirt's catalogue that the engine core can meet, triggered once, with
/// libvirt's code and full text (spec §2.6, §4, §6, §9), and nothing changed by the refusal.
/// </summary>
public sealed class ErrorCatalogueTests
{
    private const long Size = 4 << 20;
    private const string Other = "11111111-2222-3333-4444-555555555555";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task DomainErrors()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("e", Size, new TestDisk("vda"));

        await Expect(LibvirtErrorCode.NoDomain, "Domain not found: no domain with matching name 'nope'", () => Task.FromResult(test.Host.LookupByName("nope")));
        await Expect(LibvirtErrorCode.NoDomain, $"Domain not found: no domain with matching uuid '{Other}'", () => Task.FromResult(test.Host.LookupByUuid(Guid.Parse(Other))));
        await Expect(LibvirtErrorCode.NoDomain, "Domain not found: no domain with matching id 7", () => Task.FromResult(test.Host.LookupById(7)));
        await Expect(
            LibvirtErrorCode.OperationFailed,
            $"operation failed: domain 'e' already exists with uuid {TestHost.Uuid}",
            () => test.Host.DefineAsync(test.DomainXml("e", new TestDisk("vda")).Replace(TestHost.Uuid, Other, StringComparison.Ordinal), Ct));
        await Expect(
            LibvirtErrorCode.OperationFailed,
            $"operation failed: domain 'e' is already defined with uuid {TestHost.Uuid}",
            () => test.Host.DefineAsync(test.DomainXml("f", new TestDisk("vda")), Ct));
        await Expect(LibvirtErrorCode.OperationInvalid, "Requested operation is not valid: domain is not running", () => domain.DestroyAsync(Ct));

        await domain.StartAsync(Ct);
        Assert.Equal(1, domain.Id);
        Assert.Same(domain, test.Host.LookupById(1));
        await Expect(LibvirtErrorCode.OperationInvalid, "Requested operation is not valid: domain is already running", () => domain.StartAsync(Ct));
        await domain.DestroyAsync(Ct);

        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await Expect(LibvirtErrorCode.OperationInvalid, "Requested operation is not valid: cannot delete inactive domain with 1 checkpoints", () => test.Host.UndefineAsync(domain, cancellationToken: Ct));
        Assert.True(File.Exists(Path.Combine(test.StateRoot, "domains", "e.xml")));
        await Expect(LibvirtErrorCode.InvalidArg, "unsupported flags (0x80) in function qemuDomainUndefineFlags", () => test.Host.UndefineAsync(domain, (DomainUndefineFlags)0xe0, Ct));
        await Expect(LibvirtErrorCode.OperationInvalid, "Requested operation is not valid: cannot both keep and delete nvram", () => test.Host.UndefineAsync(domain, DomainUndefineFlags.Nvram | DomainUndefineFlags.KeepNvram | DomainUndefineFlags.CheckpointsMetadata, Ct));
        Assert.True(File.Exists(Path.Combine(test.StateRoot, "domains", "e.xml")));

        // A running domain undefined becomes transient, cannot be undefined again, and is gone once stopped.
        await domain.StartAsync(Ct);
        await test.Host.UndefineAsync(domain, cancellationToken: Ct);
        Assert.False(domain.IsPersistent);
        await Expect(LibvirtErrorCode.OperationInvalid, "Requested operation is not valid: cannot undefine transient domain", () => test.Host.UndefineAsync(domain, cancellationToken: Ct));
        await domain.DestroyAsync(Ct);
        Assert.Empty(test.Host.ListDomains());
        Assert.False(Directory.Exists(Path.Combine(test.StateRoot, "checkpoint", "e")));

        // virt-manager's delete passes MANAGED_SAVE | KEEP_NVRAM | KEEP_TPM (0x49), which libvirt
        // 9.0 accepts (the TPM flags are libvirt 8.9's).
        var other = await test.Host.DefineAsync(test.DomainXml("g", new TestDisk("vda")), Ct);
        await test.Host.UndefineAsync(other, (DomainUndefineFlags)0x49, Ct);
        Assert.Empty(test.Host.ListDomains());
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "domains", "g.xml")));
    }

    [Fact]
    public async Task DiskErrors_LeaveNothingOpenAndNothingChanged()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var vdb = new TestDisk("vdb");
        var domain = await test.DefineAsync("d", Size, vda, vdb);
        var before = await Peer.RunCheckedAsync("qemu-img", "info", test.ImagePath("d", vda));

        await using (await QemuIoHolder.HoldAsync(test.ImagePath("d", vdb)))
        {
            var error = await Expect(LibvirtErrorCode.OperationFailed, null, () => domain.StartAsync(Ct));
            Assert.Contains("Failed to get \"write\" lock: is another process using the image?", error.Message, StringComparison.Ordinal);
            Assert.Equal(DomainState.ShutOff, domain.State);

            // Offline: every image is opened before any is changed, so vda gets no bitmap either.
            error = await Expect(LibvirtErrorCode.OperationFailed, null, () => domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));
            Assert.Contains(test.ImagePath("d", vdb), error.Message, StringComparison.Ordinal);
            Assert.Equal(0, domain.Checkpoints.Count);
            Assert.Equal(before, await Peer.RunCheckedAsync("qemu-img", "info", test.ImagePath("d", vda)));
        }

        // vda was released by the failed start: the domain starts now.
        await domain.StartAsync(Ct);
        await domain.DestroyAsync(Ct);

        File.Delete(test.ImagePath("d", vdb));
        var missing = await Expect(LibvirtErrorCode.SystemError, null, () => domain.StartAsync(Ct));
        Assert.Equal($"Cannot access storage file '{test.ImagePath("d", vdb)}' (as uid:{ProcessIdentity.UserId}, gid:{ProcessIdentity.GroupId}): No such file or directory", missing.Message);

        var network = await test.Host.DefineAsync(
            """
            <domain type='kvm'>
              <name>n</name>
              <devices>
                <disk type='network' device='disk'>
                  <source protocol='nbd' name='x'>
                    <host name='example.org' port='10809'/>
                  </source>
                  <target dev='vda' bus='virtio'/>
                </disk>
              </devices>
            </domain>
            """,
            Ct);
        await Expect(LibvirtErrorCode.ConfigUnsupported, "unsupported configuration: disk 'vda': source type 'network' is not supported, only local files and block devices", () => network.StartAsync(Ct));
    }

    [Fact]
    public async Task CheckpointErrors()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var vdb = new TestDisk("vdb");
        var domain = await test.DefineAsync("c", Size, vda, vdb, new TestDisk("vdc", "raw", ReadOnly: true));
        var checkpoints = domain.Checkpoints;
        const string C1 = "<domaincheckpoint><name>c1</name></domaincheckpoint>";

        // Flags, checked before anything else.
        await Expect(LibvirtErrorCode.InvalidArg, "unsupported flags (0x2) in function qemuCheckpointCreateXML", () => checkpoints.CreateAsync(C1, CheckpointCreateFlags.Quiesce, Ct));
        await Expect(
            LibvirtErrorCode.InvalidArg,
            "Flags 'VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE' and 'VIR_DOMAIN_CHECKPOINT_CREATE_QUIESCE' are mutually exclusive",
            () => checkpoints.CreateAsync(C1, CheckpointCreateFlags.Redefine | CheckpointCreateFlags.Quiesce, Ct));
        await Expect(
            LibvirtErrorCode.InvalidArg,
            "Flag 'VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE' is required by flag 'VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE'",
            () => checkpoints.CreateAsync(C1, CheckpointCreateFlags.RedefineValidate, Ct));
        await Expect(LibvirtErrorCode.InvalidArg, "unsupported flags (0x10) in function qemuDomainListAllCheckpoints", () => checkpoints.ListAsync((CheckpointListFlags)0x10, Ct));

        // The document and its alignment with the domain.
        await Expect(LibvirtErrorCode.ConfigUnsupported, "unsupported configuration: no disk named 'vdz'", () => checkpoints.CreateAsync("<domaincheckpoint><disks><disk name='vdz'/></disks></domaincheckpoint>", cancellationToken: Ct));
        await Expect(LibvirtErrorCode.ConfigUnsupported, "unsupported configuration: disk 'vda' specified twice", () => checkpoints.CreateAsync("<domaincheckpoint><disks><disk name='vdb'/><disk name='vda'/><disk name='vda'/></disks></domaincheckpoint>", cancellationToken: Ct));
        await Expect(LibvirtErrorCode.ConfigUnsupported, "unsupported configuration: disk 'vdc' is empty or readonly", () => checkpoints.CreateAsync("<domaincheckpoint><disks><disk name='vdc'/></disks></domaincheckpoint>", cancellationToken: Ct));
        await Expect(LibvirtErrorCode.ConfigUnsupported, "unsupported configuration: bitmap for disk 'vda' must match checkpoint name 'c1'", () => checkpoints.CreateAsync("<domaincheckpoint><name>c1</name><disks><disk name='vda' bitmap='b1'/></disks></domaincheckpoint>", cancellationToken: Ct));
        await Expect(LibvirtErrorCode.XmlError, "XML error: a redefined checkpoint must have a name", () => checkpoints.CreateAsync("<domaincheckpoint><creationTime>1</creationTime></domaincheckpoint>", CheckpointCreateFlags.Redefine, Ct));
        await Expect(LibvirtErrorCode.XmlInvalidSchema, null, () => checkpoints.CreateAsync("<domaincheckpoint><name>.bad</name></domaincheckpoint>", cancellationToken: Ct));
        Assert.Equal(0, checkpoints.Count);
        await AssertBitmapsAsync(test, "c", [], vda, vdb);

        // The read-only raw disk gets no bitmap by default; vda and vdb get one each.
        await checkpoints.CreateAsync(C1, cancellationToken: Ct);
        await Expect(LibvirtErrorCode.OperationFailed, "operation failed: domain moment c1 already exists", () => checkpoints.CreateAsync(C1, cancellationToken: Ct));
        await AssertBitmapsAsync(test, "c", ["c1"], vda, vdb);
        await checkpoints.CreateAsync("<domaincheckpoint><name>c2</name></domaincheckpoint>", cancellationToken: Ct);

        // Lookups.
        await Expect(LibvirtErrorCode.NoDomainCheckpoint, "Domain checkpoint not found: no domain checkpoint with matching name 'nope'", () => checkpoints.GetXmlAsync("nope", cancellationToken: Ct));
        await Expect(LibvirtErrorCode.NoDomainCheckpoint, "Domain checkpoint not found: checkpoint 'c1' does not have a parent", () => checkpoints.GetParentAsync("c1", Ct));
        Assert.Equal("c1", await checkpoints.GetParentAsync("c2", Ct));

        // Redefinitions: the tree, the UUID, and bitmaps that do not exist.
        await Expect(LibvirtErrorCode.InvalidArg, "invalid argument: cannot set moment c1 as its own parent", () => checkpoints.CreateAsync(Redefinition("c1", "c1"), CheckpointCreateFlags.Redefine, Ct));
        await Expect(LibvirtErrorCode.InvalidArg, "invalid argument: parent c2 would create cycle to c1", () => checkpoints.CreateAsync(Redefinition("c1", "c2"), CheckpointCreateFlags.Redefine, Ct));
        await Expect(LibvirtErrorCode.InvalidArg, "invalid argument: parent c7 for moment c8 not found", () => checkpoints.CreateAsync(Redefinition("c8", "c7"), CheckpointCreateFlags.Redefine, Ct));
        var foreign = (await checkpoints.GetXmlAsync("c2", cancellationToken: Ct)).Replace("<name>c2</name>", "<name>c9</name>", StringComparison.Ordinal).Replace(TestHost.Uuid, Other, StringComparison.Ordinal);
        await Expect(LibvirtErrorCode.InvalidArg, $"invalid argument: definition for checkpoint c9 must use uuid {TestHost.Uuid}", () => checkpoints.CreateAsync(foreign, CheckpointCreateFlags.Redefine, Ct));
        await Expect(LibvirtErrorCode.OperationInvalid, "Requested operation is not valid: domain is not running", () => checkpoints.CreateAsync(Redefinition("c9", "c2"), CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct));
        await Expect(LibvirtErrorCode.OperationInvalid, "Requested operation is not valid: domain is not running", () => checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Size, Ct));
        Assert.Equal(2, checkpoints.Count);

        await domain.StartAsync(Ct);
        await Expect(LibvirtErrorCode.CheckpointInconsistent, "checkpoint inconsistent: missing or broken bitmap 'c9' for disk 'vda'", () => checkpoints.CreateAsync(Redefinition("c9", "c2"), CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct));
        Assert.Equal(2, checkpoints.Count);
        Assert.Equal("c2", await checkpoints.CreateAsync(Redefinition("c2", "c1"), CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct));

        // Metadata without bitmaps: deleting it finds no bitmap to remove.
        await checkpoints.CreateAsync(Redefinition("c9", "c2"), CheckpointCreateFlags.Redefine, Ct);
        await Expect(LibvirtErrorCode.InternalError, "internal error: bitmap 'c9' not found in backing chain of 'vda'", () => checkpoints.DeleteAsync("c9", cancellationToken: Ct));
        await Expect(
            LibvirtErrorCode.InvalidArg,
            "Flags 'VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN' and 'VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN_ONLY' are mutually exclusive",
            () => checkpoints.DeleteAsync("c9", CheckpointDeleteFlags.Children | CheckpointDeleteFlags.ChildrenOnly, Ct));
        await checkpoints.DeleteAsync("c9", CheckpointDeleteFlags.MetadataOnly, Ct);
        Assert.Equal(["c1", "c2"], await checkpoints.ListAsync(CheckpointListFlags.Topological, Ct));
    }

    [Fact]
    public async Task CheckpointOnAWritableRawDisk_IsRefused_BeforeAnyImageGetsABitmap()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var domain = await test.DefineAsync("w", Size, vda, new TestDisk("vdb", "raw"));
        const string Message = "unsupported configuration: checkpoint for disk vdb unsupported for storage type raw";

        // Offline, then running: the qcow2 disk listed first gets no bitmap either.
        await Expect(LibvirtErrorCode.ConfigUnsupported, Message, () => domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));
        await domain.StartAsync(Ct);
        await Expect(LibvirtErrorCode.ConfigUnsupported, Message, () => domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));
        await domain.DestroyAsync(Ct);

        Assert.Equal(0, domain.Checkpoints.Count);
        await AssertBitmapsAsync(test, "w", [], vda);
    }

    [Fact]
    public async Task CheckpointMetadataOnAReadOnlyFileSystem_RunningDomain_IsRefusedAndNothingChanged()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var vdb = new TestDisk("vdb");
        var domain = await test.DefineAsync("s", Size, vda, vdb);
        await domain.StartAsync(Ct);
        await using (await TmpfsMount.ReadOnlyAsync(Path.Combine(test.StateRoot, "checkpoint")))
        {
            await Expect(LibvirtErrorCode.InternalError, "internal error: unable to save metadata for checkpoint c1", () => domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));
            Assert.Equal(0, domain.Checkpoints.Count);
            Assert.Empty(await domain.Checkpoints.ListAsync(cancellationToken: Ct));
            Assert.Null(domain.Checkpoints.CurrentName);
        }

        // The images store their bitmaps when the domain stops: none of c1's is left.
        await domain.DestroyAsync(Ct);
        await AssertBitmapsAsync(test, "s", [], vda, vdb);

        // Nothing stale blocks the same name once the metadata can be written.
        await domain.StartAsync(Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await domain.DestroyAsync(Ct);
        await AssertBitmapsAsync(test, "s", ["c1"], vda, vdb);
    }

    [Fact]
    public async Task CheckpointMetadataOnAFullFileSystem_InactiveDomain_IsRefusedAndNothingChanged()
    {
        await using var test = await TestHost.CreateAsync();
        var vda = new TestDisk("vda");
        var vdb = new TestDisk("vdb");
        var domain = await test.DefineAsync("f", Size, vda, vdb);
        var checkpointDirectory = Path.Combine(test.StateRoot, "checkpoint", "f");
        await using (await TmpfsMount.FullAsync(Path.Combine(test.StateRoot, "checkpoint")))
        {
            // The bitmaps are in both images when the metadata write fails; they are removed again.
            await Expect(LibvirtErrorCode.InternalError, "internal error: unable to save metadata for checkpoint c1", () => domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));
            Assert.Equal(0, domain.Checkpoints.Count);
            Assert.Empty(await domain.Checkpoints.ListAsync(cancellationToken: Ct));
            await AssertBitmapsAsync(test, "f", [], vda, vdb);

            // Neither the failed write's temporary file nor the creation record is left.
            Assert.Empty(Directory.Exists(checkpointDirectory) ? Directory.GetFileSystemEntries(checkpointDirectory) : []);
            Assert.Empty(Directory.GetFiles(Path.Combine(test.StateRoot, "jobs")));
        }

        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await AssertBitmapsAsync(test, "f", ["c1"], vda, vdb);
    }

    private static async Task AssertBitmapsAsync(TestHost test, string domain, string[] expected, params TestDisk[] disks)
    {
        foreach (var disk in disks)
        {
            Assert.Equal(expected, await ImageBitmaps.NamesAsync(test.ImagePath(domain, disk)));
        }
    }

    private static string Redefinition(string name, string parent)
        => $"<domaincheckpoint><name>{name}</name><parent><name>{parent}</name></parent><creationTime>5</creationTime><disks><disk name='vda' checkpoint='bitmap'/></disks></domaincheckpoint>";

    // Runs the call and checks the libvirt code and, when given, the whole message.
    private static async Task<Exception> Expect<T>(LibvirtErrorCode code, string? message, Func<Task<T>> call)
        => await Expect(code, message, (Func<Task>)call);

    private static async Task<Exception> Expect(LibvirtErrorCode code, string? message, Func<Task> call)
    {
        var error = await Assert.ThrowsAnyAsync<Exception>(call);
        var actual = error switch
        {
            EngineException e => e.Code,
            DocumentException d => d.Code,
            _ => throw new Xunit.Sdk.XunitException($"not a libvirt error: {error}"),
        };
        Assert.Equal(code, actual);
        if (message is not null)
        {
            Assert.Equal(message, error.Message);
        }

        return error;
    }
}
