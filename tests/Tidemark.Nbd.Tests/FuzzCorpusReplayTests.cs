using Tidemark.Fuzz;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>
/// The NBD fuzzing corpus (<c>bench/fuzz/corpus/nbd-requests</c>) and any input the fuzzer
/// found (<c>bench/fuzz/findings/nbd-requests</c>) replayed through the harness itself
/// (<see cref="NbdRequestTarget"/>): each connection ends the way the protocol allows, with no
/// failure the server has to log as unexpected.
/// </summary>
public sealed class FuzzCorpusReplayTests
{
    [Fact]
    public async Task NbdRequestInputs_EndTheirConnectionWithoutAnUnexpectedFailure()
    {
        var inputs = FuzzInputs.Of("nbd-requests");
        Assert.True(inputs.Count >= 5, $"only {inputs.Count} inputs");
        using var target = new NbdRequestTarget();
        foreach (var input in inputs)
        {
            var bytes = await File.ReadAllBytesAsync(input, TestContext.Current.CancellationToken);
            var finding = Record.Exception(() => target.Run(bytes));
            Assert.True(finding is null, $"{Path.GetFileName(input)}: {finding}");
        }
    }
}
