using System.Buffers.Binary;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;
using Tidemark.Remote.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Remote.Tests;

/// <summary>
/// <see cref="LibvirtClient"/> against <see cref="Server.RemoteServer"/>, and its bytes on the
/// wire against those of stock virsh doing the same thing.
/// </summary>
public sealed class ClientTests : IAsyncLifetime
{
    private TestRemoteServer _server = null!;

    public async ValueTask InitializeAsync()
    {
        _server = await TestRemoteServer.StartAsync();
        _server.Hypervisor.AddDomain("vm1", running: true);
        _server.Hypervisor.AddDomain("vm2");
        _server.Hypervisor.AddCheckpoint("vm1", "c1", null, 1_700_000_000);
        _server.Hypervisor.AddCheckpoint("vm1", "c2", "c1", 1_700_000_100);
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    private Task<LibvirtClient> ConnectAsync() => LibvirtClient.ConnectAsync(_server.Uri, cancellationToken: Token);

    [Fact]
    public async Task Open_NegotiatesAsVirshDoes()
    {
        await using var client = await ConnectAsync();
        Assert.True(client.SupportsKeepalive);
        Assert.True(client.SupportsEventCallbacks);
        Assert.Equal("qemu:///system", client.Uri.Name);
        Assert.Equal("QEMU", await client.GetTypeAsync(cancellationToken: Token));
        Assert.Equal(9_000_000ul, await client.GetLibraryVersionAsync(cancellationToken: Token));
        Assert.Equal("qemu:///system", await client.GetUriAsync(cancellationToken: Token));
        Assert.True(await client.SupportsFeatureAsync(RemoteFeature.TypedParamString, cancellationToken: Token));
        Assert.False(await client.SupportsFeatureAsync((RemoteFeature)12, cancellationToken: Token));
    }

    [Fact]
    public async Task Domains_ListLookupAndQueries()
    {
        await using var client = await ConnectAsync();
        var domains = await client.ListAllDomainsAsync(3, cancellationToken: Token);
        Assert.Equal(["vm1", "vm2"], domains.Select(d => d.Name));
        var vm1 = await client.LookupDomainByNameAsync("vm1", cancellationToken: Token);
        Assert.Equal(_server.Hypervisor.Domain("vm1").Uuid, vm1.Uuid);
        Assert.Equal(vm1, await client.LookupDomainByUuidAsync(vm1.Uuid, cancellationToken: Token));
        Assert.Equal(vm1, await client.LookupDomainByIdAsync(vm1.Id, cancellationToken: Token));
        Assert.Equal(new DomainStateInfo(DomainState.Running, 1), await client.GetDomainStateAsync(vm1, cancellationToken: Token));
        Assert.Equal(new DomainInfo(DomainState.Running, 1048576, 1048576, 2, 0), await client.GetDomainInfoAsync(vm1, cancellationToken: Token));
        Assert.True(await client.IsDomainActiveAsync(vm1, cancellationToken: Token));
        Assert.Equal(_server.Hypervisor.Domain("vm1").Xml, await client.GetDomainXmlAsync(vm1, cancellationToken: Token));
        await client.SetAutostartAsync(vm1, true, cancellationToken: Token);
        Assert.True(await client.GetAutostartAsync(vm1, cancellationToken: Token));
        Assert.Equal(new BlockInfo(65536, 1 << 30, 200704), await client.GetBlockInfoAsync(vm1, "vda", cancellationToken: Token));
        Assert.Null(await client.GetBlockJobInfoAsync(vm1, "vda", cancellationToken: Token));
        Assert.Equal(new BlockJobInfo(BlockJobType.Backup, 0, 10, 100), await client.GetBlockJobInfoAsync(vm1, "vdb", cancellationToken: Token));
        Assert.Equal(2, await client.FreezeFilesystemsAsync(vm1, ["/", "/home"], cancellationToken: Token));
        var vm2 = await client.StartDomainAsync(domains[1], cancellationToken: Token);
        Assert.True(vm2.Id > 0);
        await client.DestroyDomainAsync(vm2, cancellationToken: Token);
        Assert.Equal(DomainState.Shutoff, (await client.GetDomainStateAsync(vm2, cancellationToken: Token)).State);
    }

    [Fact]
    public async Task Errors_CarryLibvirtsCodeDomainAndText()
    {
        await using var client = await ConnectAsync();
        var missing = await Assert.ThrowsAsync<LibvirtError>(() => client.LookupDomainByNameAsync("nosuch", cancellationToken: Token));
        Assert.Equal(VirErrorNumber.NoDomain, missing.Code);
        Assert.Equal("Domain not found: no domain with matching name 'nosuch'", missing.Message);
        var vm1 = await client.LookupDomainByNameAsync("vm1", cancellationToken: Token);
        var root = await client.LookupCheckpointByNameAsync(vm1, "c1", cancellationToken: Token);
        var noParent = await Assert.ThrowsAsync<LibvirtError>(() => client.GetCheckpointParentAsync(root, cancellationToken: Token));
        Assert.Equal(VirErrorNumber.NoDomainCheckpoint, noParent.Code);
        Assert.Equal(VirErrorDomain.Qemu, noParent.Domain);
        var noSupport = await Assert.ThrowsAsync<LibvirtError>(() => client.DefineDomainAsync("<domain/>", 2, cancellationToken: Token));
        Assert.Equal(VirErrorNumber.NoSupport, noSupport.Code);
        Assert.Equal("this function is not supported by the connection driver: virDomainDefineXMLFlags", noSupport.Message);
        var noBackup = await Assert.ThrowsAsync<LibvirtError>(() => client.GetBackupXmlAsync(vm1, cancellationToken: Token));
        Assert.Equal(VirErrorNumber.NoDomainBackup, noBackup.Code);

        // The connection is still good after errors.
        Assert.Equal("QEMU", await client.GetTypeAsync(cancellationToken: Token));
    }

    [Fact]
    public async Task Checkpoints_CreateListParentDelete()
    {
        await using var client = await ConnectAsync();
        var vm1 = await client.LookupDomainByNameAsync("vm1", cancellationToken: Token);
        var c3 = await client.CreateCheckpointAsync(vm1, "<domaincheckpoint><name>c3</name></domaincheckpoint>", cancellationToken: Token);
        Assert.Equal(new RemoteCheckpoint("c3", vm1), c3);
        Assert.Equal(["c1", "c2", "c3"], (await client.ListAllCheckpointsAsync(vm1, cancellationToken: Token)).Select(c => c.Name));
        Assert.Equal("c2", (await client.GetCheckpointParentAsync(c3, cancellationToken: Token)).Name);
        Assert.Equal(["c3"], (await client.ListCheckpointChildrenAsync(new RemoteCheckpoint("c2", vm1), cancellationToken: Token)).Select(c => c.Name));
        Assert.Contains("<name>c3</name>", await client.GetCheckpointXmlAsync(c3, cancellationToken: Token), StringComparison.Ordinal);
        await client.DeleteCheckpointAsync(c3, cancellationToken: Token);
        var gone = await Assert.ThrowsAsync<LibvirtError>(() => client.LookupCheckpointByNameAsync(vm1, "c3", cancellationToken: Token));
        Assert.Equal(VirErrorNumber.NoDomainCheckpoint, gone.Code);
    }

    [Fact]
    public async Task Jobs_StatsWithStringsAndBackupBegin()
    {
        await using var client = await ConnectAsync();
        var vm1 = await client.LookupDomainByNameAsync("vm1", cancellationToken: Token);
        await client.BeginBackupAsync(vm1, "<domainbackup/>", "<domaincheckpoint/>", cancellationToken: Token);
        Assert.Contains("BeginBackup vm1 <domainbackup/> <domaincheckpoint/>", _server.Hypervisor.Calls);
        var stats = await client.GetJobStatsAsync(vm1, 1, cancellationToken: Token);
        Assert.Equal(DomainJobType.Completed, stats.Type);
        Assert.Equal(ProtocolTestHypervisor.CompletedBackupStats, stats.Parameters);
        Assert.Equal(JobInfo.None, await client.GetJobInfoAsync(vm1, cancellationToken: Token));
        var abort = await Assert.ThrowsAsync<LibvirtError>(() => client.AbortJobAsync(vm1, cancellationToken: Token));
        Assert.Equal(VirErrorNumber.OperationInvalid, abort.Code);
    }

    [Fact]
    public async Task Events_ReachOnlyMatchingCallbacks()
    {
        await using var client = await ConnectAsync();
        var vm1 = await client.LookupDomainByNameAsync("vm1", cancellationToken: Token);
        var vm2 = await client.LookupDomainByNameAsync("vm2", cancellationToken: Token);
        var lifecycle = new TaskCompletionSource<DomainLifecycleEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        var completed = new TaskCompletionSource<JobCompletedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.LifecycleEvent += (_, e) => lifecycle.TrySetResult(e);
        client.JobCompleted += (_, e) => completed.TrySetResult(e);
        var lifecycleId = await client.RegisterDomainEventAsync(DomainEventId.Lifecycle, cancellationToken: Token);
        var jobId = await client.RegisterDomainEventAsync(DomainEventId.JobCompleted, vm1, cancellationToken: Token);

        // vm2's job is not vm1's: the callback filtered on vm1 must not fire for it.
        _server.Server.Events.PublishJobCompleted(vm2, []);
        _server.Server.Events.PublishLifecycle(vm2, DomainLifecycleEvent.Started, 0);
        _server.Server.Events.PublishJobCompleted(vm1, ProtocolTestHypervisor.CompletedBackupStats);

        var l = await lifecycle.Task.WaitAsync(TimeSpan.FromSeconds(10), Token);
        Assert.Equal((lifecycleId, "vm2", DomainLifecycleEvent.Started), (l.CallbackId, l.Domain.Name, l.Event));
        var j = await completed.Task.WaitAsync(TimeSpan.FromSeconds(10), Token);
        Assert.Equal((jobId, "vm1"), (j.CallbackId, j.Domain.Name));
        Assert.Equal(ProtocolTestHypervisor.CompletedBackupStats, j.Statistics);
        await client.DeregisterDomainEventAsync(jobId, cancellationToken: Token);
        var unknown = await Assert.ThrowsAsync<LibvirtError>(() => client.DeregisterDomainEventAsync(jobId, cancellationToken: Token));
        Assert.Equal(VirErrorNumber.InternalError, unknown.Code);
        Assert.Equal($"internal error: domain event callback {jobId} not registered", unknown.Message);
    }

    [Fact]
    public async Task PipelinedCalls_AreMatchedBySerial()
    {
        await using var client = await ConnectAsync();
        var vm1 = await client.LookupDomainByNameAsync("vm1", cancellationToken: Token);
        var calls = Enumerable.Range(0, 200).Select(async i => i % 2 == 0
            ? (await client.LookupCheckpointByNameAsync(vm1, i % 4 == 0 ? "c1" : "c2", cancellationToken: Token)).Name
            : (await client.ListAllDomainsAsync(cancellationToken: Token)).Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var results = await Task.WhenAll(calls);
        for (var i = 0; i < results.Length; i++)
        {
            Assert.Equal(i % 2 == 0 ? (i % 4 == 0 ? "c1" : "c2") : "2", results[i]);
        }
    }

    /// <summary>100 clients at once, each looking up, listing and reading checkpoints: every answer is its own.</summary>
    [Fact]
    public async Task HundredConcurrentClients_EachGetsItsOwnAnswers()
    {
        var clients = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => ConnectAsync()));
        try
        {
            Assert.Equal(100, _server.Server.ConnectionCount);
            var results = await Task.WhenAll(clients.Select(async (client, i) =>
            {
                var vm1 = await client.LookupDomainByNameAsync("vm1", Token);
                var names = new List<string>();
                for (var round = 0; round < 5; round++)
                {
                    var checkpoints = await client.ListAllCheckpointsAsync(vm1, cancellationToken: Token);
                    var pick = checkpoints[(i + round) % checkpoints.Count];
                    names.Add((await client.LookupCheckpointByNameAsync(vm1, pick.Name, cancellationToken: Token)).Name);
                    Assert.Equal(2, (await client.ListAllDomainsAsync(cancellationToken: Token)).Count);
                }

                return (i, names);
            }));
            foreach (var (i, names) in results)
            {
                Assert.Equal(Enumerable.Range(0, 5).Select(round => (i + round) % 2 == 0 ? "c1" : "c2"), names);
            }
        }
        finally
        {
            await Task.WhenAll(clients.Select(c => c.DisposeAsync().AsTask()));
        }
    }

    [Fact]
    public async Task Uri_FormsVirtnbdbackupAndVirshUse()
    {
        Assert.Equal(new LibvirtUri("qemu", "/system", "/s"), LibvirtUri.Parse("qemu+unix:///system?socket=/s"));
        Assert.Equal(new LibvirtUri("qemu", "/system", "/s"), LibvirtUri.Parse("qemu:///system?socket=/s"));
        Assert.Equal(LibvirtUri.SystemSocket, LibvirtUri.Parse("qemu:///system").SocketPath);
        Assert.Equal("/d", LibvirtUri.Parse("qemu:///system", "/d").SocketPath);
        Assert.Equal(RemoteProtocolErrorReason.InvalidUri, Assert.Throws<RemoteProtocolException>(() => LibvirtUri.Parse("qemu+ssh://host/system")).Reason);
        Assert.Equal(RemoteProtocolErrorReason.InvalidUri, Assert.Throws<RemoteProtocolException>(() => LibvirtUri.Parse("qemu+unix://host/system")).Reason);
        await using var client = await LibvirtClient.ConnectAsync($"qemu:///system?socket={_server.SocketPath}", cancellationToken: Token);
        Assert.Equal("QEMU", await client.GetTypeAsync(cancellationToken: Token));
    }

    [Fact]
    public async Task MissingSocket_IsASystemError()
    {
        var e = await Assert.ThrowsAsync<LibvirtError>(() => LibvirtClient.ConnectAsync("qemu:///system?socket=/nonexistent/sock", cancellationToken: Token));
        Assert.Equal(VirErrorNumber.SystemError, e.Code);
        Assert.Contains("/nonexistent/sock", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// virsh domstate and the client doing the same calls put the same bytes on the wire:
    /// every message, serials included, from AUTH_LIST to CONNECT_CLOSE.
    /// </summary>
    [Fact]
    public async Task WireBytes_MatchACapturedVirshSession()
    {
        using var dir = new TempDirectory("remote-proxy");
        List<byte[]> virsh;
        await using (var proxy = new RecordingProxy(dir, _server.SocketPath))
        {
            var r = await Peer.RunAsync("virsh", ["-c", $"qemu+unix:///system?socket={proxy.SocketPath}", "domstate", "vm1"]);
            Assert.Equal(0, r.ExitCode);
            virsh = proxy.ClientMessages();
        }

        List<byte[]> ours;
        await using (var proxy = new RecordingProxy(dir, _server.SocketPath))
        {
            await using (var client = await LibvirtClient.ConnectAsync($"qemu+unix:///system?socket={proxy.SocketPath}", cancellationToken: Token))
            {
                var vm1 = await client.LookupDomainByNameAsync("vm1", cancellationToken: Token);
                await client.GetDomainStateAsync(vm1, cancellationToken: Token);
            }

            ours = proxy.ClientMessages();
        }

        static string Describe(byte[] m) => $"proc {BinaryPrimitives.ReadUInt32BigEndian(m.AsSpan(12))} serial {BinaryPrimitives.ReadUInt32BigEndian(m.AsSpan(20))}: {Convert.ToHexString(m)}";
        var keepalive = virsh.Where(m => BinaryPrimitives.ReadUInt32BigEndian(m.AsSpan(4)) == RemoteWire.KeepaliveProgram).ToList();
        Assert.Empty(keepalive);
        Assert.Equal(virsh.Select(Describe), ours.Select(Describe));
        Assert.Equal(10, ours.Count);
    }
}
