using Tidemark.Remote.Protocol;
using Tidemark.Remote.Tests.Support;

namespace Tidemark.Remote.Tests;

/// <summary>
/// Stock virsh 9.0 as the client of <see cref="Server.RemoteServer"/> over
/// <c>qemu+unix:///system?socket=PATH</c>: its whole opening sequence, its commands and its
/// error lines, exactly as it prints them.
/// </summary>
public sealed class VirshTests : IAsyncLifetime
{
    private TestRemoteServer _server = null!;

    public async ValueTask InitializeAsync()
    {
        _server = await TestRemoteServer.StartAsync();
        _server.Hypervisor.AddDomain("vm1", running: true);
        _server.Hypervisor.AddDomain("vm2");
        _server.Hypervisor.AddCheckpoint("vm1", "c1", null, 1_700_000_000);
        _server.Hypervisor.AddCheckpoint("vm1", "c2", "c1", 1_700_000_100);
        _server.Hypervisor.AddCheckpoint("vm1", "c3", "c2", 1_700_000_200);
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    private async Task<string> RunOkAsync(params string[] args)
    {
        var r = await Virsh.RunAsync(_server, args);
        Assert.True(r.ExitCode == 0, $"virsh {string.Join(' ', args)} exited {r.ExitCode}: {r.Stderr}");
        Assert.Equal("", r.Stderr);
        return r.Stdout;
    }

    private static string Local(long seconds) => DateTimeOffset.FromUnixTimeSeconds(seconds).ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss zzz", System.Globalization.CultureInfo.InvariantCulture).Remove(23, 1);

    [Fact]
    public async Task ListAll_ShowsRunningAndShutOffDomains()
    {
        var output = await RunOkAsync("list", "--all");
        Assert.Equal(" Id   Name   State\n-----------------------\n 1    vm1    running\n -    vm2    shut off\n\n", output);
        Assert.Contains("Open qemu:///system", _server.Hypervisor.Calls);
        Assert.Contains("ListAllDomains 3", _server.Hypervisor.Calls);
    }

    [Fact]
    public async Task DumpXml_PrintsTheDomainDocument()
    {
        var output = await RunOkAsync("dumpxml", "vm1");
        Assert.Equal(_server.Hypervisor.Domain("vm1").Xml + "\n", output);
    }

    [Fact]
    public async Task DomState_OfAnInactiveDomain()
    {
        Assert.Equal("shut off\n\n", await RunOkAsync("domstate", "vm2"));
        Assert.Equal("running\n\n", await RunOkAsync("domstate", "vm1"));
    }

    [Fact]
    public async Task CheckpointList_ReadsEachCreationTime()
    {
        var output = await RunOkAsync("checkpoint-list", "vm1");
        Assert.Equal(
            " Name   Creation Time\n-----------------------------------\n" +
            $" c1     {Local(1_700_000_000)}\n c2     {Local(1_700_000_100)}\n c3     {Local(1_700_000_200)}\n\n",
            output);
    }

    /// <summary>The tree stops at the root only because the root's GET_PARENT fails with 103.</summary>
    [Fact]
    public async Task CheckpointListTree_RootParentIsNoDomainCheckpoint()
    {
        var output = await RunOkAsync("checkpoint-list", "vm1", "--tree");
        Assert.Equal("c1\n  |\n  +- c2\n      |\n      +- c3\n        \n\n", output);
    }

    [Fact]
    public async Task CheckpointDumpXml_PrintsTheCheckpointDocument()
    {
        var output = await RunOkAsync("checkpoint-dumpxml", "vm1", "c2");
        Assert.StartsWith("<domaincheckpoint>\n  <name>c2</name>\n  <parent>\n    <name>c1</name>\n  </parent>\n  <creationTime>1700000100</creationTime>", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CheckpointDelete_RemovesItAndReparentsItsChild()
    {
        Assert.Equal("Domain checkpoint c2 deleted\n\n", await RunOkAsync("checkpoint-delete", "vm1", "c2"));
        Assert.Equal("c1\n  |\n  +- c3\n    \n\n", await RunOkAsync("checkpoint-list", "vm1", "--tree"));
    }

    [Fact]
    public async Task MissingDomain_ErrorLineAsLibvirtPrintsIt()
    {
        var r = await Virsh.RunAsync(_server, "domstate", "nosuch");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("error: failed to get domain 'nosuch'\n", r.Stderr);
        Assert.Contains("LookupDomainByName nosuch", _server.Hypervisor.Calls);
    }

    [Fact]
    public async Task MissingCheckpoint_ErrorLine()
    {
        var r = await Virsh.RunAsync(_server, "checkpoint-dumpxml", "vm1", "zz");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("error: Domain checkpoint not found: no domain checkpoint with matching name 'zz'\n", r.Stderr);
    }

    /// <summary>Procedures the server lacks are NO_SUPPORT named by the API virsh called, as a libvirt driver without it answers.</summary>
    [Theory]
    [InlineData("error: Failed to query for interfaces addresses\nerror: this function is not supported by the connection driver: virDomainInterfaceAddresses\n", "domifaddr", "vm1")]
    [InlineData("error: this function is not supported by the connection driver: virDomainSetMemoryFlags\n", "setmem", "vm1", "64M")]
    [InlineData("error: this function is not supported by the connection driver: virDomainSnapshotNum\n", "snapshot-list", "vm1")]
    [InlineData("error: this function is not supported by the connection driver: virConnectGetCapabilities\n", "capabilities")]
    [InlineData("error: this function is not supported by the connection driver: virDomainBlockCommit\n", "blockcommit", "vm1", "vda")]
    public async Task UnimplementedProcedure_IsNoSupportWithTheApiName(string stderr, params string[] command)
    {
        var r = await Virsh.RunAsync(_server, command);
        Assert.Equal(1, r.ExitCode);
        Assert.EndsWith(stderr, r.Stderr, StringComparison.Ordinal);
    }

    /// <summary>GET_JOB_STATS's typed parameters as virsh decodes and prints them, string included.</summary>
    [Fact]
    public async Task DomJobInfoCompleted_PrintsTheTypedParameters()
    {
        var output = await RunOkAsync("domjobinfo", "vm1", "--completed");
        Assert.Equal(
            "Job type:         Completed   \nOperation:        Backup      \nTime elapsed:     1234         ms\n" +
            "File processed:   1.000 GiB\nFile remaining:   0.000 B\nFile total:       1.000 GiB\nError message:    none\n\n",
            output);
        Assert.Equal("Job type:         None        \n\n", await RunOkAsync("domjobinfo", "vm1"));
    }

    [Fact]
    public async Task BackupBegin_SendsTheDefaultDocument()
    {
        Assert.Equal("Backup started\n\n", await RunOkAsync("backup-begin", "vm1"));
        Assert.Contains("BeginBackup vm1 <domainbackup/> -", _server.Hypervisor.Calls);
        var r = await Virsh.RunAsync(_server, "backup-dumpxml", "vm1");
        Assert.Equal((1, "error: Domain backup job id not found: no domain backup job present\n"), (r.ExitCode, r.Stderr));
    }

    [Fact]
    public async Task DomInfo_UsesGetInfoOsTypeAndManagedSave()
    {
        var vm1 = _server.Hypervisor.Domain("vm1");
        var output = await RunOkAsync("dominfo", "vm1");
        Assert.StartsWith($"Id:             1\nName:           vm1\nUUID:           {vm1.Uuid:D}\nOS Type:        hvm\nState:          running\nCPU(s):         2\nMax memory:     1048576 KiB\n", output, StringComparison.Ordinal);
        Assert.Contains("\nManaged save:   no\n", output, StringComparison.Ordinal);
    }

    /// <summary>A JOB_COMPLETED MESSAGE (363) decoded by virsh event, after its callback registration (316).</summary>
    [Fact]
    public async Task EventJobCompleted_ArrivesThroughTheRegisteringConnection()
    {
        var vm1 = _server.Hypervisor.Domain("vm1").Ref;
        var virsh = Virsh.RunAsync(_server, "event", "vm1", "--event", "job-completed", "--timeout", "30");
        await WaitForCallbackAsync(DomainEventId.JobCompleted);
        _server.Server.Events.PublishJobCompleted(vm1, ProtocolTestHypervisor.CompletedBackupStats);
        var r = await virsh;
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(
            "event 'job-completed' for domain 'vm1':\n\toperation: 9\n\ttime_elapsed: 1234\n\tdisk_total: 1073741824\n" +
            "\tdisk_processed: 1073741824\n\tdisk_remaining: 0\n\tsuccess: 1\n\terrmsg: none\nevents received: 1\n\n",
            r.Stdout);
    }

    [Fact]
    public async Task EventLifecycle_StartedBooted()
    {
        var vm1 = _server.Hypervisor.Domain("vm1").Ref;
        var virsh = Virsh.RunAsync(_server, "event", "vm1", "--event", "lifecycle", "--timeout", "30");
        await WaitForCallbackAsync(DomainEventId.Lifecycle);
        _server.Server.Events.PublishLifecycle(vm1, DomainLifecycleEvent.Started, 0);
        var r = await virsh;
        Assert.Equal((0, "event 'lifecycle' for domain 'vm1': Started Booted\nevents received: 1\n\n"), (r.ExitCode, r.Stdout));
    }

    private async Task WaitForCallbackAsync(DomainEventId eventId)
    {
        for (var i = 0; i < 1500 && !_server.Server.Events.HasCallbacks(eventId); i++)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.True(_server.Server.Events.HasCallbacks(eventId), "virsh did not register its event callback");
    }
}
