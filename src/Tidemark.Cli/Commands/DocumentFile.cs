using Tidemark.Formats.Xml;

namespace Tidemark.Cli.Commands;

/// <summary>Reads a document file for the document verbs, refusing one over the document size cap before reading it.</summary>
internal static class DocumentFile
{
    /// <summary>The file's text.</summary>
    /// <exception cref="CliException">The file is missing, unreadable or too large.</exception>
    public static async Task<string> ReadAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                throw new CliException($"failed to open file '{path}': No such file or directory");
            }

            // UTF-8 needs at least one byte per character, so a file over the character cap in
            // bytes may still fit; four bytes per character bounds it from above.
            if (info.Length > 4L * XmlDocumentLoader.MaxDocumentChars)
            {
                throw new CliException($"file '{path}' is {info.Length} bytes, larger than any document Tidemark reads");
            }

            return await File.ReadAllTextAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"failed to read file '{path}': {e.Message}", e);
        }
    }
}
