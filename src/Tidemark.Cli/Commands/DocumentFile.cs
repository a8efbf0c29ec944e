using Tidemark.Formats;
using Tidemark.Formats.Xml;

namespace Tidemark.Cli.Commands;

/// <summary>
/// Reads a document for the document verbs from a file, a device, a FIFO, a process
/// substitution (<c>&lt;(…)</c>) or standard input (<c>-</c>), through the one bounded reader
/// (<see cref="DocumentText"/>): what is read is capped, whatever length the source claims.
/// </summary>
internal static class DocumentFile
{
    /// <summary>The name that stands for standard input, as for xmllint.</summary>
    public const string StandardInput = "-";

    /// <summary>The document's text.</summary>
    /// <exception cref="CliException">The source is missing, unreadable, too large or not UTF-8.</exception>
    public static async Task<string> ReadAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            if (path == StandardInput)
            {
                var stdin = Console.OpenStandardInput();
                await using (stdin.ConfigureAwait(false))
                {
                    return await DocumentText.ReadAsync(stdin, path, cancellationToken).ConfigureAwait(false);
                }
            }

            if (Directory.Exists(path))
            {
                throw new CliException($"failed to read file '{path}': Is a directory");
            }

            if (!File.Exists(path))
            {
                throw new CliException($"failed to open file '{path}': No such file or directory");
            }

            // Opening a FIFO waits for its writer; the wait is abandoned when a signal cancels
            // the command (the thread then ends with the process).
            var stream = await Task.Run(() => new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0), cancellationToken)
                .WaitAsync(cancellationToken).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                return await DocumentText.ReadAsync(stream, path, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (DocumentException e)
        {
            throw new CliException(e.Detail, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"failed to read file '{path}': {e.Message}", e);
        }
    }
}
