using System.Xml.Linq;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

public sealed class ValidateCommandTests
{
    private static string Example(string name) => Path.Combine(Repository.Root, "examples", name);

    [Fact]
    public async Task Validate_GoodDocuments_SaysValidatesForEachAndExitsZero()
    {
        var files = new[] { Example("domain.xml"), Example("checkpoint-create.xml"), Example("backup-pull-unix.xml") };

        var run = await CliRun.RunAsync(["validate", .. files]);

        Assert.Equal(0, run.ExitCode);
        Assert.Equal(string.Concat(files.Select(f => $"{f} validates\n")), run.Stdout);
    }

    [Fact]
    public async Task Validate_BadDocument_PrintsErrorLinesThenFailsToValidate()
    {
        var bad = Example("checkpoint-invalid.xml");

        var run = await CliRun.RunAsync("validate", bad, Example("domain.xml"));

        Assert.Equal(1, run.ExitCode);
        Assert.Equal(
            $"{bad}: XML document failed to validate against schema: Unable to validate doc against domaincheckpoint.rng\n"
            + $"{bad}: line 3: element 'name': value '../escape' is not a valid checkpoint name\n"
            + $"{bad}: line 5: element 'disk': attribute 'bitmap': not allowed with checkpoint='no'\n"
            + $"{bad} fails to validate\n"
            + $"{Example("domain.xml")} validates\n",
            run.Stdout);
    }

    [Fact]
    public async Task Validate_MalformedXml_NamesLineAndColumn()
    {
        using var dir = new TempDirectory();
        var file = dir.File("broken.xml");
        await File.WriteAllTextAsync(file, "<domainbackup>\n  <disks>\n</domainbackup>\n", TestContext.Current.CancellationToken);

        var run = await CliRun.RunAsync("validate", file);

        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith($"{file}: XML error: failed to parse xml document '{file}': line 3, column 3: ", run.Stdout, StringComparison.Ordinal);
        Assert.EndsWith($"\n{file} fails to validate\n", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Validate_MissingFile_FailsToValidate()
    {
        var run = await CliRun.RunAsync("validate", "/nonexistent/x.xml");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("/nonexistent/x.xml: failed to open file '/nonexistent/x.xml': No such file or directory\n/nonexistent/x.xml fails to validate\n", run.Stdout);
    }

    [Fact]
    public async Task Validate_NotUtf8OrADirectory_FailsToValidate()
    {
        using var dir = new TempDirectory();
        var latin1 = dir.File("latin1.xml");
        await File.WriteAllBytesAsync(latin1, [.. "<domaincheckpoint><description>caf"u8, 0xE9, .. "</description></domaincheckpoint>"u8], TestContext.Current.CancellationToken);

        var run = await CliRun.RunAsync("validate", latin1, dir.Path);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal(
            $"{latin1}: failed to read file '{latin1}': not valid UTF-8\n{latin1} fails to validate\n"
            + $"{dir.Path}: failed to read file '{dir.Path}': Is a directory\n{dir.Path} fails to validate\n",
            run.Stdout);
    }

    [Fact]
    public async Task Validate_NoFile_IsAUsageError()
    {
        var run = await CliRun.RunAsync("validate");

        Assert.NotEqual(0, run.ExitCode);
    }

    /// <summary>
    /// One <c>tidemark validate</c> over every XML file of libvirt's conformance folder gives, file
    /// by file, xmllint's verdict with the schema its root element calls for.
    /// </summary>
    [Fact]
    public async Task Validate_EveryConformanceFile_AgreesWithXmllint()
    {
        var files = LibvirtConformance.XmlFiles().Select(f => Path.Combine(LibvirtConformance.Folder, f)).ToArray();

        var run = await CliRun.RunAsync(["validate", .. files]);

        var expected = new List<string>();
        foreach (var file in files)
        {
            var schema = XDocument.Load(file).Root!.Name.LocalName switch
            {
                "domaincheckpoint" => "domaincheckpoint.rng",
                "domainbackup" => "domainbackup.rng",
                _ => null,
            };
            var valid = schema is not null
                && (await Peer.RunAsync("xmllint", ["--noout", "--relaxng", Path.Combine(LibvirtConformance.Schemas, schema), file])).ExitCode == 0;
            expected.Add(valid ? $"{file} validates" : $"{file} fails to validate");
        }

        var verdicts = run.Stdout.Split('\n').Where(l => l.EndsWith(" validates", StringComparison.Ordinal) || l.EndsWith(" fails to validate", StringComparison.Ordinal));
        Assert.Equal(expected, verdicts);
        Assert.Equal(expected.All(e => e.EndsWith(" validates", StringComparison.Ordinal)) ? 0 : 1, run.ExitCode);
        Assert.Equal(37, files.Length);
    }
}
