using System.Text;

namespace Tidemark.Formats.Xml;

/// <summary>
/// Reads a document's text from any stream, with a bound on what is read rather than on what a
/// file claims to hold: a device (<c>/dev/zero</c>), a pipe, a FIFO or standard input has no
/// length, and a file can grow while it is read. Every document source goes through here.
/// </summary>
public static class DocumentText
{
    /// <summary>
    /// The most bytes read from one source: 10 MiB, virsh's cap for an XML file
    /// (<c>VSH_MAX_XML_FILE</c>, which virsh passes to <c>virFileReadAll</c>). One byte more and
    /// reading stops with an error; nothing beyond it is read.
    /// </summary>
    public const int MaxBytes = 10 * 1024 * 1024;

    // A first read buffer large enough for any real document (a domain is a few KiB); it
    // doubles as needed, never past MaxBytes + 1.
    private const int InitialBufferSize = 64 * 1024;

    // Documents are UTF-8, as libvirt writes them; a byte sequence that is not UTF-8 is an
    // error, not a silent replacement character. (An XML declaration naming another encoding
    // is not honoured.)
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Reads <paramref name="stream"/> to its end, at most <see cref="MaxBytes"/> bytes, and
    /// decodes it as UTF-8 (a byte order mark is dropped). <paramref name="source"/> names the
    /// stream in errors.
    /// </summary>
    /// <exception cref="DocumentException">More than <see cref="MaxBytes"/> bytes
    /// (<see cref="DocumentErrorReason.DocumentTooLarge"/>), or not UTF-8
    /// (<see cref="DocumentErrorReason.NotUtf8"/>).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was
    /// cancelled, also while a read from a pipe is waiting for its writer.</exception>
    public static async Task<string> ReadAsync(Stream stream, string source, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(source);
        cancellationToken.ThrowIfCancellationRequested();

        // Not a pooled buffer: a read abandoned on cancellation may still write into it.
        var buffer = new byte[InitialBufferSize];
        var length = 0;
        while (true)
        {
            if (length == buffer.Length)
            {
                Array.Resize(ref buffer, (int)Math.Min(2L * buffer.Length, MaxBytes + 1L));
            }

            // A pipe's read does not observe the token on every platform; WaitAsync does, so a
            // signal stops a command stuck on a silent writer.
            var read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken).AsTask().WaitAsync(cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                break;
            }

            length += read;
            if (length > MaxBytes)
            {
                throw new DocumentException(
                    DocumentErrorReason.DocumentTooLarge,
                    $"failed to read file '{source}': larger than {MaxBytes} bytes, the limit for an XML document");
            }
        }

        return Decode(buffer.AsSpan(0, length), source);
    }

    /// <summary>Decodes <paramref name="bytes"/> as strict UTF-8, without a byte order mark.</summary>
    /// <exception cref="DocumentException">Not UTF-8.</exception>
    public static string Decode(ReadOnlySpan<byte> bytes, string source)
    {
        if (bytes.StartsWith("\uFEFF"u8))
        {
            bytes = bytes[3..];
        }

        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new DocumentException(DocumentErrorReason.NotUtf8, $"failed to read file '{source}': not valid UTF-8", [], e);
        }
    }
}
