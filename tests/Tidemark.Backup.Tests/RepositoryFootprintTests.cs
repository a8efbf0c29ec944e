using Tidemark.Backup.Repository;
using Tidemark.Backup.Run;
using Tidemark.Backup.Tests.Support;
using Tidemark.Remote;

namespace Tidemark.Backup.Tests;

/// <summary>
/// A backup run that fails before it stores anything (an unreachable host, an unknown domain)
/// leaves none of the directories or the lock file it created; an existing repository is left
/// as it was.
/// </summary>
public sealed class RepositoryFootprintTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    [Fact]
    public async Task FailedFirstRun_LeavesNoDirectoryOrLockFile()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        var parent = host.Directory.File("new");
        var repository = new BackupRepository(Path.Combine(parent, "repo"));

        var unknown = await Assert.ThrowsAsync<LibvirtError>(() => BackupRunner.RunAsync(host.Options() with { Repository = repository, Domain = "nosuch" }, Ct));
        Assert.Contains("nosuch", unknown.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(parent), "the failed run left the repository's directories");

        var unreachable = host.Options() with { Repository = repository, ConnectionUri = $"qemu+unix:///system?socket={host.Directory.File("no-such.sock")}" };
        await Assert.ThrowsAnyAsync<Exception>(() => BackupRunner.RunAsync(unreachable, Ct));
        Assert.False(Directory.Exists(parent), "the failed run left the repository's directories");

        // An empty directory the user made stays, without a lock file.
        Directory.CreateDirectory(repository.Root);
        await Assert.ThrowsAsync<LibvirtError>(() => BackupRunner.RunAsync(host.Options() with { Repository = repository, Domain = "nosuch" }, Ct));
        Assert.True(Directory.Exists(repository.Root));
        Assert.Empty(Directory.EnumerateFileSystemEntries(repository.Root));
    }

    [Fact]
    public async Task FailedRunIntoExistingRepository_LeavesItAsItWas()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 1M");
        await host.BackupAsync();
        var before = Listing(host.Repository.Root);
        Assert.Contains(RepositoryLock.FileName, before);

        await Assert.ThrowsAsync<LibvirtError>(() => BackupRunner.RunAsync(host.Options() with { Domain = "nosuch" }, Ct));
        Assert.Equal(before, Listing(host.Repository.Root));

        // The lock was released: the next run takes it.
        await host.BackupAsync();
    }

    private static List<string> Listing(string root) =>
        Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories).Select(p => Path.GetRelativePath(root, p)).Order(StringComparer.Ordinal).ToList();
}
