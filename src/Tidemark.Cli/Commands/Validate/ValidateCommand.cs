using Tidemark.Formats;

namespace Tidemark.Cli.Commands.Validate;

/// <summary>Runs <c>tidemark validate</c>.</summary>
internal static class ValidateCommand
{
    public static async Task<int> RunAsync(CliConsole console, IReadOnlyList<string> files, CancellationToken cancellationToken)
    {
        var failed = 0;
        foreach (var file in files)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (await ValidateFileAsync(console, file, cancellationToken).ConfigureAwait(false))
            {
                await console.Out.WriteLineAsync($"{file} validates").ConfigureAwait(false);
            }
            else
            {
                failed++;
                await console.Out.WriteLineAsync($"{file} fails to validate").ConfigureAwait(false);
            }
        }

        return failed == 0 ? 0 : 1;
    }

    private static async Task<bool> ValidateFileAsync(CliConsole console, string file, CancellationToken cancellationToken)
    {
        try
        {
            var text = await DocumentFile.ReadAsync(file, cancellationToken).ConfigureAwait(false);
            DocumentValidator.Validate(text, file, cancellationToken);
            return true;
        }
        catch (Exception e) when (e is DocumentException or CliException)
        {
            foreach (var line in e.Message.Split('\n'))
            {
                await console.Out.WriteLineAsync($"{file}: {line}").ConfigureAwait(false);
            }

            return false;
        }
    }
}
