using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

public sealed class TourCommandTests
{
    private static string Examples => Path.Combine(Repository.Root, "examples");

    [Fact]
    public async Task Tour_RunsTheSystemEndToEnd_AndEveryStepHolds()
    {
        var run = await CliRun.RunAsync("tour");

        Assert.True(run.ExitCode == 0, run.Stdout + run.Stderr);
        Assert.Equal(string.Empty, run.Stderr);
        string[] steps =
        [
            "daemon started", "domain defined and started", "guest writes", "checkpoint c1 + full push backup", "more guest writes",
            "checkpoint c2 + incremental push backup since c1", "checkpoint c3 + incremental pull backup since c2", "domain stopped",
            "vda rebuilt from full + incremental push = the disk at c2", "vda rebuilt from full + push + pull incrementals = the disk now",
            "vdb rebuilt from full + incremental push = the disk at c2", "vdb rebuilt from full + push + pull incrementals = the disk now",
            "domain undefined",
        ];
        foreach (var step in steps)
        {
            Assert.Contains("] " + step + "\n    ok  ", run.Stdout, StringComparison.Ordinal);
        }

        Assert.Contains("    ok  18 MiB copied to full-vda.qcow2 and full-vdb.qcow2 in ", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("    ok  4 MiB of dirty extents read over NBD from ", run.Stdout, StringComparison.Ordinal);
        Assert.EndsWith("\n14 of 14 steps held.\n", run.Stdout, StringComparison.Ordinal);

        // The throw-away state directory is gone.
        var state = run.Stdout.Split('\n')[0].Split(" end to end in ")[1];
        Assert.False(Directory.Exists(state));
    }

    [Fact]
    public async Task TourDocuments_OnTheBundledExamples_PrintsTheGoldenTranscriptAndExitsZero()
    {
        var run = await CliRun.RunAsync("tour", "--documents");

        Assert.Equal(string.Empty, run.Stderr);
        Assert.Equal(0, run.ExitCode);
        Golden.AssertMatches("tour.out", run.Stdout);
    }

    [Fact]
    public async Task Tour_WhenAnExampleBreaks_SaysSoAndExitsNonZero()
    {
        using var dir = new TempDirectory("tidemark-tour");
        foreach (var file in Directory.GetFiles(Examples, "*.xml"))
        {
            File.Copy(file, dir.File(Path.GetFileName(file)));
        }

        // The push backup now names a disk the domain does not have.
        var push = dir.File("backup-push.xml");
        File.WriteAllText(push, File.ReadAllText(push).Replace("name='vdc' backup='no'", "name='vdz' backup='no'", StringComparison.Ordinal));

        var run = await CliRun.RunAsync("tour", "--examples", dir.Path);

        Assert.Equal(1, run.ExitCode);
        Assert.Contains(
            "  validate: REFUSED, NOT AS EXPECTED:\n    unsupported configuration: no disk named 'vdz'\n",
            run.Stdout,
            StringComparison.Ordinal);
        Assert.Contains("\n  FAIL  backup-push.xml              push backup: full copies of vda and vdb into target images\n", run.Stdout, StringComparison.Ordinal);
        Assert.EndsWith("\n6 of 7 steps went as expected; 1 did not.\n", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tour_WithoutExamples_IsAUserError()
    {
        using var dir = new TempDirectory("tidemark-tour");

        var run = await CliRun.RunAsync("tour", "--examples", dir.Path);

        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith($"error: failed to open file '{dir.File("domain.xml")}': No such file or directory", run.Stderr, StringComparison.Ordinal);
    }

    /// <summary>The examples are real libvirt documents: libvirt's own schemas accept them (the invalid one excepted).</summary>
    [Theory]
    [InlineData("domain.xml", "domain.rng", true)]
    [InlineData("checkpoint-create.xml", "domaincheckpoint.rng", true)]
    [InlineData("checkpoint-redefine.xml", "domaincheckpoint.rng", true)]
    [InlineData("checkpoint-invalid.xml", "domaincheckpoint.rng", false)]
    [InlineData("backup-push.xml", "domainbackup.rng", true)]
    [InlineData("backup-pull-incremental.xml", "domainbackup.rng", true)]
    [InlineData("backup-pull-unix.xml", "domainbackup.rng", true)]
    public async Task Example_AgreesWithXmllint(string file, string schema, bool valid)
    {
        var result = await Peer.RunAsync("xmllint", ["--noout", "--relaxng", Path.Combine(LibvirtConformance.Schemas, schema), Path.Combine(Examples, file)]);

        Assert.Equal(valid, result.ExitCode == 0);
    }
}
