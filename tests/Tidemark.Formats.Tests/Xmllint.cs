using Tidemark.Testing;

namespace Tidemark.Formats.Tests;

/// <summary>The real <c>xmllint --relaxng</c> with libvirt's schemas from the conformance folder.</summary>
internal static class Xmllint
{
    /// <summary>The schema libvirt (and virt-xml-validate) uses for a root element; null when there is none.</summary>
    public static string? SchemaFor(string rootElement) => rootElement switch
    {
        "domaincheckpoint" => "domaincheckpoint.rng",
        "domainbackup" => "domainbackup.rng",
        "domain" => "domain.rng",
        _ => null,
    };

    /// <summary>Validates a file; returns xmllint's verdict and its output.</summary>
    public static async Task<(bool Valid, string Output)> ValidateFileAsync(string file, string schema)
    {
        var result = await Peer.RunAsync("xmllint", ["--noout", "--relaxng", Path.Combine(Conformance.Schemas, schema), file]);
        return (result.ExitCode == 0, result.Stdout + result.Stderr);
    }

    /// <summary>Validates a document given as text.</summary>
    public static async Task<(bool Valid, string Output)> ValidateAsync(string xml, string schema)
    {
        using var dir = new TempDirectory("tidemark-xmllint");
        var file = dir.File("document.xml");
        await File.WriteAllTextAsync(file, xml);
        return await ValidateFileAsync(file, schema);
    }

    /// <summary>Fails the test unless xmllint accepts <paramref name="xml"/> against <paramref name="schema"/>.</summary>
    public static async Task AssertValidAsync(string xml, string schema)
    {
        var (valid, output) = await ValidateAsync(xml, schema);
        Assert.True(valid, $"xmllint --relaxng {schema} refused Tidemark's output:\n{output}\n{xml}");
    }
}
