using Tidemark.Backup.Prune;
using Tidemark.Backup.Restore;
using Tidemark.Backup.Run;
using Tidemark.Backup.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Backup.Tests;

/// <summary>
/// A domain's directory in the repository holds that domain's backups only: a directory
/// copied from another domain's, or one holding the backups of an earlier domain of the same
/// name (another uuid), is refused by run, restore and prune, naming both domains.
/// </summary>
public sealed class RepositoryDomainTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    [Fact]
    public async Task DirectoryOfAnotherDomainName_IsRefused_ByRunRestoreAndPrune()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 1M");
        await host.BackupAsync();
        await host.GuestWriteAsync("vda", "write -P 0x62 1M 1M");
        await host.BackupAsync();

        // A second domain, and the first one's backups copied in as if they were its own.
        var image = host.Directory.File("other.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
        await using (var client = await host.ConnectAsync())
        {
            await client.CreateDomainAsync(await client.DefineDomainAsync(DomainDocuments.WithQcow2Disks("other", [("vda", image)]), 0, Ct), Ct);
        }

        CopyDirectory(host.Repository.DomainDirectory("dom"), host.Repository.DomainDirectory("other"));
        var expected = $"repository directory '{host.Repository.DomainDirectory("other")}' holds backups of domain 'dom' (";

        var run = await Assert.ThrowsAsync<BackupException>(() => BackupRunner.RunAsync(host.Options() with { Domain = "other" }, Ct));
        Assert.StartsWith(expected, run.Message, StringComparison.Ordinal);
        Assert.EndsWith("), not of domain 'other'", run.Message, StringComparison.Ordinal);

        var output = host.Directory.File("other.raw");
        var restore = await Assert.ThrowsAsync<BackupException>(() => DiskRestore.RunAsync(new RestoreOptions { Repository = host.Repository, Domain = "other", Output = output }, Ct));
        Assert.StartsWith(expected, restore.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(output));

        var prune = await Assert.ThrowsAsync<BackupException>(() => ChainFold.PruneAsync(host.Repository, "other", keep: 1, cancellationToken: Ct));
        Assert.StartsWith(expected, prune.Message, StringComparison.Ordinal);
        Assert.Equal(2, Directory.GetFiles(host.Repository.DomainDirectory("other"), "*.json").Length);
    }

    [Fact]
    public async Task DirectoryOfAnEarlierDomainOfTheSameName_IsRefusedByRun_NamingBothUuids()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 1M");
        var old = await host.BackupAsync();

        // The domain is undefined, and a new one (a new uuid) gets its name and a new disk.
        var image = host.Directory.File("new.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
        Guid uuid;
        await using (var client = await host.ConnectAsync())
        {
            var domain = await client.LookupDomainByNameAsync("dom", Ct);
            await client.DestroyDomainAsync(domain, 0, Ct);

            // libvirt undefines no domain that has checkpoints.
            foreach (var checkpoint in await client.ListAllCheckpointsAsync(domain, 0, Ct))
            {
                await client.DeleteCheckpointAsync(checkpoint, 0, Ct);
            }

            await client.UndefineDomainAsync(domain, 0, Ct);
            var again = await client.DefineDomainAsync(DomainDocuments.WithQcow2Disks("dom", [("vda", image)]), 0, Ct);
            await client.CreateDomainAsync(again, Ct);
            uuid = again.Uuid;
        }

        Assert.NotEqual(old.DomainUuid, uuid.ToString());
        var run = await Assert.ThrowsAsync<BackupException>(() => host.BackupAsync());
        Assert.Equal($"repository directory '{host.Repository.DomainDirectory("dom")}' holds backups of domain 'dom' with uuid {old.DomainUuid}, not of domain 'dom' with uuid {uuid} on the host: another domain of the same name; back it up into another repository", run.Message);
        Assert.Single(await host.Repository.ReadManifestsAsync("dom", Ct));
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }
}
