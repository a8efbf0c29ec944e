using System.Globalization;
using Tidemark.Engine.Backups;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Backups.Support;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// A child process hosting the engine (Tidemark.Engine.CrashHost, scenarios <c>handover-push</c>
/// and <c>handover-pull</c>) runs a full backup of two disks (a push slowed down, or a pull)
/// while two NBD guests write, and closes its host leaving the domain and the job to the next
/// one; it is SIGKILLed at a random point, during the hand-over or after it, in turns. The next
/// host either takes the domain and the job up: a push completes with each target equal to its
/// disk at the job's instant (qemu-img compare against the disk captured before the job began),
/// a pull's exports read as that instant (nbdcopy) after the guests have written on through the
/// next host; or it reports the domain crashed and removes the job's files. Any target left is
/// whole and is the instant; no record of the job is left once it has ended; every write a guest
/// was told of is kept.
/// </summary>
public sealed class BackupHandOverCrashTests
{
    private const long Size = 16 << 20;
    private const string Domain = "j";
    private static readonly TestDisk[] Disks = [new("vda"), new("vdb")];
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(2);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task KilledAroundTheHandOverOfABackup_TheJobGoesOnOrIsCleanedUp_ItsStoresAreTheInstant()
    {
        var resumed = new Dictionary<string, int> { ["handover-push"] = 0, ["handover-pull"] = 0 };
        var trials = new Dictionary<string, int> { ["handover-push"] = 0, ["handover-pull"] = 0 };
        await CrashTrials.RunAsync([("handover-push", 8), ("handover-pull", 6)], async t =>
        {
            // Each scenario's trials take turns: killed during the hand-over, then after it.
            var afterHandOver = trials[t.Scenario]++ % 2 == 1;
            if (await RunTrialAsync(t, afterHandOver))
            {
                resumed[t.Scenario]++;
            }

            return false;
        });

        Assert.All(resumed, r => Assert.True(r.Value > 0, $"no {r.Key} trial took a carried job up"));
    }

    /// <summary>Runs one trial; true when the next host took the running job up.</summary>
    private static async Task<bool> RunTrialAsync(CrashTrial trial, bool afterHandOver)
    {
        var (pauseMs, killAfterMs, writeSeed) = (trial.Draw("pause ms", 0, 60), trial.Draw("kill after ms", 0, afterHandOver ? 100 : 60), trial.DrawSeed());
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync(Domain, Size, Disks);
        var instants = new Dictionary<string, string>();
        foreach (var disk in Disks)
        {
            var image = test.ImagePath(Domain, disk);
            await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 12M", image);
            instants[disk.Target] = await DomainBackupTests.CaptureAsync(test, image, $"instant-{disk.Target}.raw");
        }

        var work = test.Directory.File("work");
        Directory.CreateDirectory(work);
        var writes = new FlushedWrites { FuaWrites = true, ServerMayLeave = true };
        var push = trial.Scenario == "handover-push";
        await using (var child = FollowedProcess.Start("dotnet", [Path.Combine(AppContext.BaseDirectory, "Tidemark.Engine.CrashHost.dll"), test.StateRoot, Domain, trial.Scenario, pauseMs.ToString(CultureInfo.InvariantCulture), work]))
        {
            using var stop = new CancellationTokenSource();
            Task[] writers = [];
            try
            {
                var socket = await child.WaitForLineAsync("ready ");
                await File.WriteAllTextAsync(Path.Combine(work, "go"), "", Ct);
                await child.WaitForLineAsync("began");

                // The guests write only once the job's instant is fixed: the captures above are it.
                writers = [.. Disks.Select((d, i) => Task.Run(() => writes.WriteAsync(c => Guest.ConnectAsync(socket, d.Target, c), d.Target, Size, new Random(writeSeed + i), stop.Token), Ct))];
                await writes.WaitForEveryDiskAsync([.. Disks.Select(d => d.Target)], writers, Ct);
                await File.WriteAllTextAsync(Path.Combine(work, "written"), "", Ct);
                await child.WaitForLineAsync(afterHandOver ? "handed over" : "handing over");
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
        // A carried push may have completed already: the host then holds its completed statistics.
        var tookUp = domain.Backup is not null || domain.TakeCompletedBackupInfo(keep: true) is not null;
        if (domain.Backup is { } backup)
        {
            if (!push)
            {
                await AssertPullServesTheInstantAsync(domain, work, instants, writes, writeSeed);
            }

            await backup.Completion.WaitAsync(JobTimeout, Ct);
        }

        if (domain.TakeCompletedBackupInfo(keep: false) is { } info)
        {
            Assert.True(info.Phase == BackupJobPhase.Completed, $"the carried job ended {info.Phase}: {info.ErrorMessage}");
        }

        if (afterHandOver)
        {
            Assert.True(back, "a domain whose hand-over had finished did not come back");
        }

        if (back)
        {
            await domain.DestroyAsync(Ct);
        }
        else
        {
            Assert.True(domain.EndedByHostCrash, "a domain the kill cut off is not reported crashed");
        }

        // A push that ended (completed before the kill, or here) keeps both targets, and each is
        // its disk at the instant; one cut short leaves neither. A pull leaves no scratch. A
        // finished hand-over gives the next host the job, unless a push completed before it.
        var targets = Disks.Select(d => Path.Combine(work, $"j-{d.Target}.qcow2")).ToList();
        var kept = targets.Count(File.Exists);
        Assert.True(kept is 0 or 2, $"{kept} of the 2 targets left");
        if (afterHandOver)
        {
            Assert.True(push ? kept == 2 : tookUp, "a job whose hand-over had finished was lost");
        }

        Assert.Empty(Directory.EnumerateFiles(work, "*.scratch"));

        foreach (var disk in Disks)
        {
            var target = Path.Combine(work, $"j-{disk.Target}.qcow2");
            if (File.Exists(target))
            {
                await Peer.RunCheckedAsync("qemu-img", "check", "-q", target);
                await Documents.AssertSameContentAsync(target, "qcow2", instants[disk.Target]);
            }

            await writes.AssertKeptAsync(disk.Target, test.ImagePath(Domain, disk), everyReply: back);
        }

        Assert.Empty(Directory.EnumerateFiles(Path.Combine(test.StateRoot, "jobs")));
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "run", Domain + ".xml")), "the status record outlived the next start");
        return tookUp;
    }

    /// <summary>
    /// The guests write on through the next host (their writes judged with the others), then
    /// each pull export reads as its disk at the instant; the job is aborted.
    /// </summary>
    private static async Task AssertPullServesTheInstantAsync(Domain domain, string work, Dictionary<string, string> instants, FlushedWrites writes, int writeSeed)
    {
        var socket = domain.Running!.SocketPath;
        using (var stop = new CancellationTokenSource(TimeSpan.FromMilliseconds(300)))
        {
            await Task.WhenAll(Disks.Select((d, i) => Task.Run(() => writes.WriteAsync(c => Guest.ConnectAsync(socket, d.Target, c), d.Target, Size, new Random(writeSeed + 100 + i), stop.Token), Ct)));
        }

        foreach (var disk in Disks)
        {
            var copy = Path.Combine(work, $"copy-{disk.Target}.raw");
            await Peer.RunCheckedAsync("nbdcopy", $"nbd+unix:///{disk.Target}?socket={Path.Combine(work, "pull.sock")}", copy);
            await Documents.AssertSameContentAsync(copy, "raw", instants[disk.Target]);
        }

        domain.AbortBackup();
    }
}
