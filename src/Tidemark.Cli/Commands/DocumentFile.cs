using System.Text;
using Tidemark.Formats.Xml;

namespace Tidemark.Cli.Commands;

/// <summary>Reads a document file for the document verbs, refusing one over the document size cap before reading it.</summary>
internal static class DocumentFile
{
    // Documents are UTF-8, as libvirt writes them; a byte sequence that is not UTF-8 is an
    // error, not a silent replacement character. (An XML declaration naming another encoding
    // is not honoured.)
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The file's text.</summary>
    /// <exception cref="CliException">The file is missing, unreadable or too large.</exception>
    public static async Task<string> ReadAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            if (Directory.Exists(path))
            {
                throw new CliException($"failed to read file '{path}': Is a directory");
            }

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

            return await File.ReadAllTextAsync(path, StrictUtf8, cancellationToken).ConfigureAwait(false);
        }
        catch (DecoderFallbackException e)
        {
            throw new CliException($"failed to read file '{path}': not valid UTF-8", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"failed to read file '{path}': {e.Message}", e);
        }
    }
}
