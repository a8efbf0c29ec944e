using Tidemark.Remote;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Tidemark's <see cref="LibvirtClient"/> against a real libvirtd 9.0 and QEMU: the calls the
/// daemon and backup client make, with the answers (codes, texts, documents) the Tidemark
/// daemon's tests expect of the same calls.
/// </summary>
public sealed class LibvirtClientTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    // virDomainCreateFlags VIR_DOMAIN_START_PAUSED.
    private const uint StartPaused = 1;

    // virDomainUndefineFlags VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA (1 << 5 is _TPM;
    // include/libvirt/libvirt-domain.h).
    private const uint UndefineCheckpointsMetadata = 1 << 4;

    // virDomainCheckpointXMLFlags VIR_DOMAIN_CHECKPOINT_XML_SECURE.
    private const uint CheckpointXmlSecure = 1 << 0;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Connect_BothUriForms_OpenTheSystemDriver()
    {
        var libvirtd = await fixture.GetAsync();
        foreach (var uri in new[] { libvirtd.Uri, libvirtd.LocalUri })
        {
            await using var client = await LibvirtClient.ConnectAsync(uri, cancellationToken: Ct);
            Assert.True(client.SupportsKeepalive);
            Assert.True(client.SupportsEventCallbacks);
            Assert.Equal("qemu:///system", client.Uri.Name);
            Assert.Equal("QEMU", await client.GetTypeAsync(Ct));
            Assert.Equal("qemu:///system", await client.GetUriAsync(Ct));
            Assert.Equal(9_000_000ul, await client.GetLibraryVersionAsync(Ct));

            // QEMU 7.2.x as major * 1,000,000 + minor * 1,000 + micro.
            Assert.Equal(7_002ul, await client.GetVersionAsync(Ct) / 1000);
            Assert.True(await client.SupportsFeatureAsync(RemoteFeature.TypedParamString, Ct));
        }
    }

    [Fact]
    public async Task Domain_DefineStartLookupDestroyUndefine()
    {
        var libvirtd = await fixture.GetAsync();
        var name = libvirtd.NewDomainName("life");
        var spec = await libvirtd.DefineDomainAsync(name, disks: 2, start: false);
        await using var client = await LibvirtClient.ConnectAsync(libvirtd.Uri, cancellationToken: Ct);

        var defined = await client.LookupDomainByNameAsync(name, Ct);
        Assert.Equal(RemoteDomain.InactiveId, defined.Id);
        Assert.Equal(defined, await client.LookupDomainByUuidAsync(defined.Uuid, Ct));
        Assert.False(await client.IsDomainActiveAsync(defined, Ct));
        Assert.True(await client.IsDomainPersistentAsync(defined, Ct));
        Assert.Equal(DomainState.Shutoff, (await client.GetDomainStateAsync(defined, cancellationToken: Ct)).State);
        Assert.Contains(defined, await client.ListAllDomainsAsync(cancellationToken: Ct));

        var started = await client.StartDomainAsync(defined, StartPaused, Ct);
        Assert.True(started.Id > 0);
        Assert.Equal((defined.Name, defined.Uuid), (started.Name, started.Uuid));
        Assert.Equal(started, await client.LookupDomainByIdAsync(started.Id, Ct));
        Assert.True(await client.IsDomainActiveAsync(started, Ct));

        // Paused by the user (virDomainPausedReason VIR_DOMAIN_PAUSED_USER), as start --paused leaves it.
        Assert.Equal(new DomainStateInfo(DomainState.Paused, 1), await client.GetDomainStateAsync(started, cancellationToken: Ct));
        var info = await client.GetDomainInfoAsync(started, Ct);
        Assert.Equal((DomainState.Paused, 65536ul, (ushort)1), (info.State, info.MaxMemoryKiB, info.VirtualCpus));

        var live = await client.GetDomainXmlAsync(started, cancellationToken: Ct);
        Assert.Contains($"<domain type='qemu' id='{started.Id}'>", live, StringComparison.Ordinal);
        foreach (var disk in spec.Disks)
        {
            Assert.Contains($"<source file='{disk.Image}' index='", live, StringComparison.Ordinal);
            Assert.Contains($"<alias name='{disk.Alias}'/>", live, StringComparison.Ordinal);
        }

        // VIR_DOMAIN_XML_INACTIVE: the definition, without the running domain's id and aliases of its own.
        var inactive = await client.GetDomainXmlAsync(started, 2, Ct);
        Assert.StartsWith("<domain type='qemu'>", inactive, StringComparison.Ordinal);
        Assert.Contains($"<source file='{spec.Disks[0].Image}'/>", inactive, StringComparison.Ordinal);

        await client.DestroyDomainAsync(started, cancellationToken: Ct);
        Assert.Equal(DomainState.Shutoff, (await client.GetDomainStateAsync(defined, cancellationToken: Ct)).State);
        await client.UndefineDomainAsync(defined, cancellationToken: Ct);

        var missing = await Assert.ThrowsAsync<LibvirtError>(() => client.LookupDomainByNameAsync(name, Ct));
        Assert.Equal(VirErrorNumber.NoDomain, missing.Code);
        Assert.Equal(VirErrorDomain.Qemu, missing.Domain);
        Assert.Equal($"Domain not found: no domain with matching name '{name}'", missing.Message);
        var byUuid = await Assert.ThrowsAsync<LibvirtError>(() => client.LookupDomainByUuidAsync(defined.Uuid, Ct));
        Assert.Equal(VirErrorNumber.NoDomain, byUuid.Code);

        // The connection is still good after errors.
        Assert.Equal("QEMU", await client.GetTypeAsync(Ct));
    }

    [Fact]
    public async Task Checkpoints_CreateListLookupParentDumpDelete()
    {
        var libvirtd = await fixture.GetAsync();
        var name = libvirtd.NewDomainName("cp");
        await libvirtd.DefineDomainAsync(name, disks: 2);
        await using var client = await LibvirtClient.ConnectAsync(libvirtd.Uri, cancellationToken: Ct);
        var domain = await client.LookupDomainByNameAsync(name, Ct);

        var c1 = await client.CreateCheckpointAsync(domain, "<domaincheckpoint><name>c1</name><description>first</description></domaincheckpoint>", cancellationToken: Ct);
        Assert.Equal(new RemoteCheckpoint("c1", domain), c1);
        await libvirtd.GuestWriteAsync(name, "vda", "write -P 0x41 0 1M");
        var c2 = await client.CreateCheckpointAsync(domain, "<domaincheckpoint><name>c2</name><disks><disk name='vda'/><disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>", cancellationToken: Ct);
        Assert.Equal("c2", c2.Name);

        Assert.Equal(["c1", "c2"], (await client.ListAllCheckpointsAsync(domain, cancellationToken: Ct)).Select(c => c.Name).Order(StringComparer.Ordinal));

        // VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL: parents first; _ROOTS and _LEAVES.
        Assert.Equal(["c1", "c2"], (await client.ListAllCheckpointsAsync(domain, 1 << 1, Ct)).Select(c => c.Name));
        Assert.Equal(["c1"], (await client.ListAllCheckpointsAsync(domain, 1 << 0, Ct)).Select(c => c.Name));
        Assert.Equal(["c2"], (await client.ListAllCheckpointsAsync(domain, 1 << 2, Ct)).Select(c => c.Name));
        Assert.Equal(c2, await client.LookupCheckpointByNameAsync(domain, "c2", cancellationToken: Ct));
        Assert.Equal(c1, await client.GetCheckpointParentAsync(c2, cancellationToken: Ct));
        Assert.Equal([c2], await client.ListCheckpointChildrenAsync(c1, cancellationToken: Ct));

        var xml = await client.GetCheckpointXmlAsync(c2, cancellationToken: Ct);
        Assert.StartsWith("<domaincheckpoint>\n  <name>c2</name>\n  <parent>\n    <name>c1</name>\n  </parent>\n  <creationTime>", xml, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c2'/>\n    <disk name='vdb' checkpoint='no'/>", xml, StringComparison.Ordinal);
        Assert.Contains($"<domain type='qemu'>", xml, StringComparison.Ordinal);

        // VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN | _SIZE: the bytes written since c1, 64 KiB granules.
        var sized = await client.GetCheckpointXmlAsync(c1, (1 << 2) | (1 << 1), Ct);
        Assert.Contains("<description>first</description>", sized, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c1' size='1048576'/>", sized, StringComparison.Ordinal);
        Assert.Contains("<disk name='vdb' checkpoint='bitmap' bitmap='c1' size='0'/>", sized, StringComparison.Ordinal);
        Assert.DoesNotContain("<domain type", sized, StringComparison.Ordinal);

        var noParent = await Assert.ThrowsAsync<LibvirtError>(() => client.GetCheckpointParentAsync(c1, cancellationToken: Ct));
        Assert.Equal((VirErrorNumber.NoDomainCheckpoint, VirErrorDomain.Qemu), (noParent.Code, noParent.Domain));
        Assert.Equal("Domain checkpoint not found: checkpoint 'c1' does not have a parent", noParent.Message);

        var duplicate = await Assert.ThrowsAsync<LibvirtError>(() => client.CreateCheckpointAsync(domain, "<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));
        Assert.Equal((VirErrorNumber.OperationFailed, VirErrorDomain.Domain), (duplicate.Code, duplicate.Domain));
        Assert.Equal("operation failed: domain moment c1 already exists", duplicate.Message);

        await client.DeleteCheckpointAsync(c1, cancellationToken: Ct);
        Assert.Equal(["c2"], (await client.ListAllCheckpointsAsync(domain, cancellationToken: Ct)).Select(c => c.Name));
        var gone = await Assert.ThrowsAsync<LibvirtError>(() => client.LookupCheckpointByNameAsync(domain, "c1", cancellationToken: Ct));
        Assert.Equal((VirErrorNumber.NoDomainCheckpoint, VirErrorDomain.Qemu), (gone.Code, gone.Domain));
        Assert.Equal("Domain checkpoint not found: no domain checkpoint with matching name 'c1'", gone.Message);

        // c2 merged c1's bitmap into its own when c1 went: a root now.
        Assert.DoesNotContain("<parent>", await client.GetCheckpointXmlAsync(c2, cancellationToken: Ct), StringComparison.Ordinal);
        await client.DestroyDomainAsync(domain, cancellationToken: Ct);
        var refused = await Assert.ThrowsAsync<LibvirtError>(() => client.UndefineDomainAsync(domain, cancellationToken: Ct));
        Assert.Equal(VirErrorNumber.OperationInvalid, refused.Code);
        Assert.Equal("Requested operation is not valid: cannot delete inactive domain with 1 checkpoints", refused.Message);
        await client.UndefineDomainAsync(domain, UndefineCheckpointsMetadata, Ct);
        var undefined = await Assert.ThrowsAsync<LibvirtError>(() => client.LookupDomainByNameAsync(name, Ct));
        Assert.Equal(VirErrorNumber.NoDomain, undefined.Code);
        var metadata = CheckpointDirectory(libvirtd, name);
        Assert.Empty(Directory.Exists(metadata) ? Directory.GetFiles(metadata) : []);
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task CheckpointAndDomainFiles_Mode0600_EditWarningThenXml_LoadIntoTheEngine_WhichWritesTheSame()
    {
        var libvirtd = await fixture.GetAsync();
        var name = libvirtd.NewDomainName("md");
        await libvirtd.DefineDomainAsync(name, disks: 2);
        await using var client = await LibvirtClient.ConnectAsync(libvirtd.Uri, cancellationToken: Ct);
        var domain = await client.LookupDomainByNameAsync(name, Ct);
        var c1 = await client.CreateCheckpointAsync(domain, "<domaincheckpoint><name>c1</name><description>first</description></domaincheckpoint>", cancellationToken: Ct);
        var c2 = await client.CreateCheckpointAsync(domain, "<domaincheckpoint><name>c2</name><disks><disk name='vda'/><disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>", cancellationToken: Ct);

        // What libvirtd itself wrote (qemuCheckpointWriteMetadata → virXMLSaveFile).
        var directory = CheckpointDirectory(libvirtd, name);
        foreach (var checkpoint in new[] { c1, c2 })
        {
            var file = Path.Combine(directory, checkpoint.Name + ".xml");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));

            Assert.Equal(LibvirtCheckpointFile.EditWarning + await client.GetCheckpointXmlAsync(checkpoint, CheckpointXmlSecure, Ct), await File.ReadAllTextAsync(file, Ct));
        }

        // libvirtd's own definition file (virDomainDefSaveXML, mode 0600 and the edit warning
        // naming the domain), which the engine writes the same way.
        var definitionFile = Path.Combine(libvirtd.Directory.Path, "etc", "qemu", name + ".xml");
        var definitionText = await File.ReadAllTextAsync(definitionFile, Ct);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(definitionFile));
        Assert.StartsWith(LibvirtDomainFile.EditWarning(name), definitionText, StringComparison.Ordinal);

        // The same files, in an engine state directory beside libvirt's definition file, load
        // as the same tree.
        using var state = new TempDirectory("lvmd");
        Directory.CreateDirectory(state.File("domains"));
        File.Copy(definitionFile, Path.Combine(state.File("domains"), name + ".xml"));
        Directory.CreateDirectory(Path.Combine(state.Path, "checkpoint", name));
        foreach (var file in Directory.GetFiles(directory))
        {
            File.Copy(file, Path.Combine(state.Path, "checkpoint", name, Path.GetFileName(file)));
        }

        await using (var host = await Tidemark.Engine.Domains.DomainHost.OpenAsync(state.Path, cancellationToken: Ct))
        {
            var checkpoints = host.LookupByName(name).Checkpoints;
            Assert.Equal(["c1", "c2"], await checkpoints.ListAsync(Tidemark.Engine.Checkpoints.CheckpointListFlags.Topological, Ct));
            Assert.Equal("c1", await checkpoints.GetParentAsync("c2", Ct));
            Assert.Equal("c2", checkpoints.CurrentName);
            Assert.Contains("<description>first</description>", await checkpoints.GetXmlAsync("c1", cancellationToken: Ct), StringComparison.Ordinal);

            // Defined again through the engine, its file starts as libvirtd's does.
            await host.DefineAsync(await libvirtd.VirshOkAsync("dumpxml", "--inactive", name), Ct);
            var engineText = await File.ReadAllTextAsync(Path.Combine(state.File("domains"), name + ".xml"), Ct);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(state.File("domains"), name + ".xml")));
            Assert.Equal(definitionText[..(definitionText.IndexOf("-->\n\n", StringComparison.Ordinal) + 5)], engineText[..(engineText.IndexOf("-->\n\n", StringComparison.Ordinal) + 5)]);
        }

        await client.DestroyDomainAsync(domain, cancellationToken: Ct);
        await client.UndefineDomainAsync(domain, UndefineCheckpointsMetadata, Ct);
    }

    // libvirtd's checkpointDir, /var/lib/libvirt/qemu/checkpoint, lies in the private daemon's "lib" folder.
    private static string CheckpointDirectory(PrivateLibvirtd libvirtd, string domain)
        => Path.Combine(libvirtd.Directory.Path, "lib", "qemu", "checkpoint", domain);

    [Fact]
    public async Task Events_LifecycleAndJobCompleted()
    {
        var libvirtd = await fixture.GetAsync();
        var name = libvirtd.NewDomainName("ev");
        await libvirtd.DefineDomainAsync(name, start: false);
        await using var client = await LibvirtClient.ConnectAsync(libvirtd.Uri, cancellationToken: Ct);
        var domain = await client.LookupDomainByNameAsync(name, Ct);
        var lifecycle = new System.Collections.Concurrent.ConcurrentQueue<DomainLifecycleEventArgs>();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var completed = new TaskCompletionSource<JobCompletedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.LifecycleEvent += (_, e) =>
        {
            lifecycle.Enqueue(e);
            if (e.Event == DomainLifecycleEvent.Started)
            {
                started.TrySetResult();
            }
        };
        client.JobCompleted += (_, e) => completed.TrySetResult(e);
        var lifecycleId = await client.RegisterDomainEventAsync(DomainEventId.Lifecycle, domain, Ct);
        var jobId = await client.RegisterDomainEventAsync(DomainEventId.JobCompleted, domain, Ct);

        domain = await client.StartDomainAsync(domain, StartPaused, Ct);
        await started.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.All(lifecycle, e => Assert.Equal((lifecycleId, name), (e.CallbackId, e.Domain.Name)));

        // A pull backup ended by the client: libvirt announces the job's end with its statistics.
        var socket = libvirtd.File(name + ".nbd");
        await client.BeginBackupAsync(domain, $"<domainbackup mode='pull'><server transport='unix' socket='{socket}'/><disks><disk name='vda' type='file'><scratch file='{libvirtd.File(name + ".scratch")}'/></disk></disks></domainbackup>", cancellationToken: Ct);
        Assert.Equal(DomainJobType.Unbounded, (await client.GetJobInfoAsync(domain, Ct)).Type);
        await client.AbortJobAsync(domain, cancellationToken: Ct);
        var job = await completed.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Equal((jobId, name), (job.CallbackId, job.Domain.Name));
        Assert.Contains(job.Statistics, p => p.Field == "operation" && p.Bits == 9);
        Assert.Contains(job.Statistics, p => p.Field == "success" && p.Bits == 1);
        Assert.Contains(job.Statistics, p => p.Field == "errmsg" && p.Text == "Operation canceled");

        await client.DeregisterDomainEventAsync(jobId, Ct);
        var unknown = await Assert.ThrowsAsync<LibvirtError>(() => client.DeregisterDomainEventAsync(jobId, Ct));
        Assert.Equal((VirErrorNumber.InternalError, VirErrorDomain.Rpc, $"internal error: domain event callback {jobId} not registered"), (unknown.Code, unknown.Domain, unknown.Message));
        await client.DestroyDomainAsync(domain, cancellationToken: Ct);
        await client.UndefineDomainAsync(domain, cancellationToken: Ct);
    }
}
