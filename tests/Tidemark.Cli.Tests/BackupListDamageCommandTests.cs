namespace Tidemark.Cli.Tests;

/// <summary>
/// <c>backup list</c>, as the native program users run, over a chain file that is gone or is
/// not qcow2: the Stored column says so (JSON: <c>problem</c>), it names the file as
/// <c>verify</c> does and exits 1, rather than showing a size of 0.
/// </summary>
public sealed class BackupListDamageCommandTests
{
    [Fact]
    public async Task List_MissingOrForeignChainFile_IsFlaggedInTableAndJson_Exit1()
    {
        await using var host = await DaemonHost.StartAsync("cli-list-damage");
        await host.GuestWriteAsync("write -P 0x41 0 1M");
        var full = await host.BackupAsync();
        await host.GuestWriteAsync("write -P 0x42 4M 64k");
        var inc = await host.BackupAsync();
        var clean = await CliRun.RunAsync("backup", "list", "--repo", host.Repo);
        Assert.True(clean.ExitCode == 0, clean.Stdout + clean.Stderr);
        Assert.DoesNotContain("damaged", clean.Stdout, StringComparison.Ordinal);

        File.Delete(Path.Combine(host.Repo, "vm", "vda", full.Checkpoint + ".qcow2"));
        await File.WriteAllTextAsync(Path.Combine(host.Repo, "vm", "vda", inc.Checkpoint + ".qcow2"), "not an image\n", TestContext.Current.CancellationToken);

        var table = await CliRun.RunAsync("backup", "list", "--repo", host.Repo);
        Assert.Equal(1, table.ExitCode);
        var rows = table.Stdout.Split('\n');
        Assert.Matches($" {full.Checkpoint} .* full .* MISSING      - *$", rows.Single(r => r.Contains(full.Checkpoint, StringComparison.Ordinal) && !r.StartsWith("damaged", StringComparison.Ordinal)));
        Assert.Matches($" {inc.Checkpoint} .* incremental .* NOT QCOW2      - *$", rows.Single(r => r.Contains(inc.Checkpoint, StringComparison.Ordinal) && !r.StartsWith("damaged", StringComparison.Ordinal)));
        Assert.EndsWith($"damaged: vm/vda/{full.Checkpoint}.qcow2: chain file missing\ndamaged: vm/vda/{inc.Checkpoint}.qcow2: chain file is not a qcow2 file\n", table.Stdout, StringComparison.Ordinal);

        var json = await CliRun.RunAsync("backup", "list", "--repo", host.Repo, "--json");
        Assert.Equal(1, json.ExitCode);
        Assert.Contains("\"stored-bytes\": null,\n        \"problem\": \"chain file missing\"", json.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"stored-bytes\": 13,\n        \"problem\": \"chain file is not a qcow2 file\"", json.Stdout, StringComparison.Ordinal);

        // verify names the same files.
        var verify = await CliRun.RunAsync("verify", "--repo", host.Repo);
        Assert.Equal(1, verify.ExitCode);
        Assert.StartsWith($"damaged: vm/vda/{full.Checkpoint}.qcow2: chain file missing\n", verify.Stdout, StringComparison.Ordinal);
    }
}
