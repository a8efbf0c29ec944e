using Tidemark.Formats.Xml;
using Tidemark.Testing;

namespace Tidemark.Formats.Tests;

/// <summary>
/// The documents fuzzing corpus (<c>bench/fuzz/corpus/documents</c>) and any input the fuzzer
/// found (<c>bench/fuzz/findings/documents</c>), replayed as the harness feeds them: every
/// input is read or refused with a <see cref="DocumentException"/>, nothing else.
/// </summary>
public sealed class FuzzCorpusReplayTests
{
    [Fact]
    public async Task DocumentInputs_AreReadOrRefusedWithADocumentError()
    {
        var inputs = FuzzInputs.Of("documents");
        var refused = 0;
        foreach (var input in inputs)
        {
            try
            {
                var text = DocumentText.Decode(await File.ReadAllBytesAsync(input, TestContext.Current.CancellationToken), input);
                DocumentValidator.Validate(text, input, TestContext.Current.CancellationToken);
            }
            catch (DocumentException)
            {
                refused++;
            }
        }

        Assert.True(inputs.Count >= 10, $"only {inputs.Count} inputs");
        Assert.InRange(refused, 1, inputs.Count - 1);
    }
}
