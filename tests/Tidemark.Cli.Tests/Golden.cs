using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// Golden transcripts in <c>tests/Tidemark.Cli.Tests/Golden/</c>. Set
/// <c>TIDEMARK_REGENERATE_OUTPUT=1</c> to rewrite them from the current output, then review the
/// diff very carefully before committing it.
/// </summary>
internal static class Golden
{
    public static void AssertMatches(string name, string actual)
    {
        var path = Path.Combine(Repository.Root, "tests", "Tidemark.Cli.Tests", "Golden", name);
        if (Environment.GetEnvironmentVariable("TIDEMARK_REGENERATE_OUTPUT") == "1")
        {
            File.WriteAllText(path, actual);
        }

        Assert.Equal(File.ReadAllText(path), actual);
    }
}
