using Tidemark.Backup.Repository;
using Tidemark.Backup.Verify;
using Tidemark.Cli.Commands.Backup;

namespace Tidemark.Cli.Commands.Verify;

/// <summary>
/// Runs <c>verify</c>: first what finishing a fold an interrupted prune or merge left says
/// (on stderr under <c>--json</c>), then one line per problem (file, offset, what), then the verdict.
/// </summary>
internal static class VerifyCommand
{
    public static async Task<int> RunAsync(CliConsole console, BackupRepository repository, string? domain, string? checkpoint, bool json, CancellationToken cancellationToken)
    {
        RepositoryCommand.RequireExisting(repository);

        var lines = json ? console.Error : console.Out;
        var result = await RepositoryVerifier.RunAsync(repository, domain, checkpoint, line => lines.WriteLine(line), cancellationToken).ConfigureAwait(false);
        if (json)
        {
            await console.Out.WriteLineAsync(Json(result)).ConfigureAwait(false);
        }
        else
        {
            foreach (var finding in result.Findings)
            {
                await console.Out.WriteLineAsync($"damaged: {finding}").ConfigureAwait(false);
            }

            var verdict = result.Passed ? "passed" : $"FAILED ({result.Findings.Count} problem(s))";
            await console.Out.WriteLineAsync($"verify {verdict}: {result.Backups} backup(s), {result.ChainFiles} chain file(s), {result.BytesRead} bytes re-read").ConfigureAwait(false);
        }

        return result.Passed ? 0 : 1;
    }

    private static string Json(VerifyResult result)
    {
        return JsonText.Write(w =>
        {
            w.WriteStartObject();
            w.WriteBoolean("passed", result.Passed);
            w.WriteNumber("backups", result.Backups);
            w.WriteNumber("chain-files", result.ChainFiles);
            w.WriteNumber("bytes-read", result.BytesRead);
            w.WriteStartArray("finished-folds");
            foreach (var domain in result.FinishedFolds)
            {
                w.WriteStringValue(domain);
            }

            w.WriteEndArray();
            w.WriteStartArray("findings");
            foreach (var finding in result.Findings)
            {
                w.WriteStartObject();
                w.WriteString("file", finding.File);
                if (finding.Offset is { } offset)
                {
                    w.WriteNumber("offset", offset);
                }

                w.WriteString("problem", finding.Problem);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        });
    }
}
