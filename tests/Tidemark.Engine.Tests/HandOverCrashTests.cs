using System.Globalization;
using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// A child process hosting the engine (Tidemark.Engine.CrashHost, scenario <c>handover</c>) closes
/// its host leaving the domain to the next one (<see cref="DomainHost.CloseKeepingDomainsAsync"/>)
/// while two NBD guests write (once each has had a write acknowledged), and is SIGKILLed at a random point: before, during or after the
/// hand-over. The next host either starts the domain again, and then every write a guest was
/// replied to is in the images (flushed or not: the guest, reconnecting, goes on as if nothing
/// happened), its bitmaps valid or reported broken; or it reports the domain
/// crashed, and every flushed or FUA write is kept, as after any kill. Both images pass
/// <c>qemu-img check</c> either way.
/// </summary>
public sealed class HandOverCrashTests
{
    private const long Size = 16 << 20;
    private const string Domain = "h";
    private static readonly TestDisk[] Disks = [new("vda"), new("vdb")];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task KilledAroundTheHandOver_TheDomainComesBackWhole_OrCrashed()
    {
        var (reconnected, crashed) = (0, 0);
        await CrashTrials.RunAsync([("handover", 12)], async t =>
        {
            if (await RunTrialAsync(t))
            {
                reconnected++;
            }
            else
            {
                crashed++;
            }

            return false;
        });

        Assert.True(reconnected > 0, "no kill came after a completed hand-over");
        Assert.True(crashed > 0, "every kill came after a completed hand-over");
    }

    /// <summary>Runs one trial; true when the next host started the domain again.</summary>
    private static async Task<bool> RunTrialAsync(CrashTrial trial)
    {
        var (pauseMs, killAfterMs, writeSeed) = (trial.Draw("pause ms", 20, 200), trial.Draw("kill after ms", 0, 400), trial.DrawSeed());
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync(Domain, Size, Disks);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c0</name></domaincheckpoint>", cancellationToken: Ct);
        var writes = new FlushedWrites { FuaWrites = true, ServerMayLeave = true };
        await using (var child = FollowedProcess.Start("dotnet", [Path.Combine(AppContext.BaseDirectory, "Tidemark.Engine.CrashHost.dll"), test.StateRoot, Domain, "handover", pauseMs.ToString(CultureInfo.InvariantCulture), test.Directory.Path]))
        {
            using var stop = new CancellationTokenSource();
            Task[] writers = [];
            try
            {
                var socket = await child.WaitForLineAsync("ready ");
                writers = [.. Disks.Select((d, i) => Task.Run(() => writes.WriteAsync(c => Guest.ConnectAsync(socket, d.Target, c), d.Target, Size, new Random(writeSeed + i), stop.Token), Ct))];
                // The hand-over begins only once both guests have had a write acknowledged,
                // so every trial judges some.
                await writes.WaitForEveryDiskAsync([.. Disks.Select(d => d.Target)], writers, Ct);
                await File.WriteAllTextAsync(Path.Combine(test.Directory.Path, "go"), "", Ct);
                await Task.Delay(killAfterMs, Ct);
                await child.AssertRunningAsync();
            }
            finally
            {
                await stop.CancelAsync();
                await child.KillAsync();
            }

            await Task.WhenAll(writers);
        }

        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName(Domain);
        var back = domain.IsActive;
        if (back)
        {
            Assert.Equal(1, domain.Id);
            Assert.False(domain.EndedByHostCrash);

            // Bitmaps stored at the hand-over pass validation; those a kill left IN_USE are reported.
            if (domain.Running!.Disks.All(d => d.HasValidBitmap("c0")))
            {
                await domain.Checkpoints.CreateAsync(await domain.Checkpoints.GetXmlAsync("c0", cancellationToken: Ct), CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct);
            }
            else
            {
                var broken = await Assert.ThrowsAsync<EngineException>(async () => await domain.Checkpoints.CreateAsync(await domain.Checkpoints.GetXmlAsync("c0", cancellationToken: Ct), CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct));
                Assert.Contains("missing or broken bitmap 'c0'", broken.Message, StringComparison.Ordinal);
            }

            await domain.DestroyAsync(Ct);
        }
        else
        {
            Assert.True(domain.EndedByHostCrash, "a domain the kill cut off is not reported crashed");
        }

        Assert.False(File.Exists(Path.Combine(test.StateRoot, "run", Domain + ".xml")), "the status record outlived the next start");
        foreach (var disk in Disks)
        {
            await writes.AssertKeptAsync(disk.Target, test.ImagePath(Domain, disk), everyReply: back);
        }

        return back;
    }
}
