namespace Tidemark.Testing;

/// <summary>The inputs of one fuzzing harness kept in the repository: its seed corpus and what the fuzzer found.</summary>
public static class FuzzInputs
{
    /// <summary>Every file under <c>bench/fuzz/corpus/TARGET</c> (seeds), <c>bench/fuzz/minimised/TARGET</c> (what the fuzzer reached, minimised) and <c>bench/fuzz/findings/TARGET</c>, in name order.</summary>
    public static IReadOnlyList<string> Of(string target)
        => new[] { "corpus", "minimised", "findings" }
            .Select(kind => Path.Combine(Repository.Root, "bench", "fuzz", kind, target))
            .Where(Directory.Exists)
            .SelectMany(Directory.EnumerateFiles)
            .Order(StringComparer.Ordinal)
            .ToList();
}
