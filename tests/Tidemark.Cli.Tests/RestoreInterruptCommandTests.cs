namespace Tidemark.Cli.Tests;

/// <summary>
/// A <c>restore</c> interrupted (SIGINT) inside the one large extent it copies exits as every
/// interrupted command does (<c>error: interrupted</c>, 130) and leaves no output: neither the
/// disk it was writing nor the directory it made for it.
/// </summary>
public sealed class RestoreInterruptCommandTests
{
    [Fact]
    public async Task Restore_InterruptedInsideOneLargeExtent_Exits130_LeavesNoOutput()
    {
        await using var host = await DaemonHost.StartAsync("cli-restore-int");
        await host.GuestWriteAsync("write -P 0x41 0 240M");
        await host.BackupAsync();

        var outputDirectory = host.Directory.File("out");
        var output = Path.Combine(outputDirectory, "vda.raw");
        await using var restore = await CliProcess.StartAsync("restore", "--repo", host.Repo, "--domain", "vm", "--output", outputDirectory + "/", "--no-verify");
        while (!Directory.Exists(outputDirectory) || !Directory.EnumerateFiles(outputDirectory, ".vda.raw*").Any())
        {
            Assert.False(restore.HasExited, "the restore ended before it wrote its output");
            await Task.Delay(1, TestContext.Current.CancellationToken);
        }

        var stopped = await restore.StopAsync(CliProcess.SIGINT);
        Assert.Equal(130, stopped.ExitCode);
        Assert.Equal("error: interrupted\n", stopped.Stderr);
        Assert.Equal("", stopped.Stdout);
        Assert.False(Directory.Exists(outputDirectory), Directory.Exists(outputDirectory) ? string.Join(", ", Directory.EnumerateFileSystemEntries(outputDirectory)) : "");
        Assert.False(File.Exists(output));
    }
}
