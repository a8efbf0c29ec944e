using System.Globalization;
using System.Text;
using Tidemark.Formats.Domains;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Tests;

/// <summary>
/// What a hostile or careless input can make the document layer read, allocate and compute is
/// bounded: bytes read from a source that never ends, attributes of one element, problems
/// reported, and the work is cancellable.
/// </summary>
public sealed class BoundedInputTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Read_EndlessSource_StopsJustPastTheLimit()
    {
        // /dev/zero as a stream: no length, no end. The reader must stop by itself.
        var zero = new EndlessStream();

        var e = await Assert.ThrowsAsync<DocumentException>(() => DocumentText.ReadAsync(zero, "/dev/zero", Token));

        Assert.Equal(DocumentErrorReason.DocumentTooLarge, e.Reason);
        Assert.Equal("XML error: failed to read file '/dev/zero': larger than 10485760 bytes, the limit for an XML document", e.Message);
        Assert.InRange(zero.BytesRead, DocumentText.MaxBytes + 1, DocumentText.MaxBytes + (2L * 1024 * 1024));
    }

    [Fact]
    public async Task Read_ExactlyTheLimit_IsRead()
    {
        var bytes = new byte[DocumentText.MaxBytes];
        "<domaincheckpoint>"u8.CopyTo(bytes);
        bytes.AsSpan(18, bytes.Length - 18 - 19).Fill((byte)' ');
        "</domaincheckpoint>"u8.CopyTo(bytes.AsSpan(bytes.Length - 19));

        var text = await DocumentText.ReadAsync(new MemoryStream(bytes), "big.xml", Token);

        Assert.Equal(DocumentText.MaxBytes, text.Length);
        Assert.Equal(DocumentKind.Checkpoint, DocumentValidator.Validate(text, "big.xml", Token));
    }

    [Fact]
    public async Task Read_ByteOrderMark_IsDropped()
        => Assert.Equal("<domainbackup/>", await DocumentText.ReadAsync(new MemoryStream([0xEF, 0xBB, 0xBF, .. "<domainbackup/>"u8]), "bom.xml", Token));

    [Fact]
    public async Task Read_Latin1_IsNotUtf8()
    {
        var e = await Assert.ThrowsAsync<DocumentException>(() => DocumentText.ReadAsync(new MemoryStream([.. "<a>caf"u8, 0xE9, .. "</a>"u8]), "l.xml", Token));

        Assert.Equal(DocumentErrorReason.NotUtf8, e.Reason);
        Assert.Equal("failed to read file 'l.xml': not valid UTF-8", e.Detail);
    }

    [Fact]
    public async Task Read_Cancelled_WhileTheWriterIsSilent()
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Token);
        var read = DocumentText.ReadAsync(new SilentStream(), "fifo", cancel.Token);

        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read);
    }

    /// <summary>The reproducer: 300k attributes on <c>&lt;description&gt;</c>, refused by the linear scan.</summary>
    [Fact]
    public void ManyAttributesOnOneElement_AreRefusedNamingElementAndLine()
    {
        var text = "<domaincheckpoint>\n<description " + Attributes(0, 300_000) + ">x</description></domaincheckpoint>";

        var e = Assert.Throws<DocumentException>(() => DocumentValidator.Validate(text, "a.xml", Token));

        Assert.Equal(DocumentErrorReason.TooManyAttributes, e.Reason);
        Assert.Equal("XML error: failed to parse xml document 'a.xml': line 2: element 'description' has more than 1024 attributes", e.Message);
    }

    [Fact]
    public void AttributesAtTheLimit_ReachTheSchema()
    {
        var text = "<domaincheckpoint><description " + Attributes(0, XmlDocumentLoader.MaxAttributesPerElement) + ">x</description></domaincheckpoint>";

        Assert.Equal(DocumentErrorReason.SchemaViolation, Assert.Throws<DocumentException>(() => DocumentValidator.Validate(text, "a.xml", Token)).Reason);
    }

    [Theory]
    [InlineData("<!-- a=1 b=2 c=3 -->")]
    [InlineData("<![CDATA[<x a=1 b=2 c=3>]]>")]
    [InlineData("<?pi a=1 b=2 c=3?>")]
    public void MarkupThatIsNotAStartTag_IsNotCounted(string markup)
    {
        // With a cap of 2, only a start tag's attributes count; '=' in values or other markup does not.
        var text = $"<a x='=' y=\"==\">{markup}</a>";

        var e = Record.Exception(() => StartTagScan.Check(text, 2, "m", Token));

        Assert.Null(e);
        Assert.Equal(DocumentErrorReason.TooManyAttributes, Assert.Throws<DocumentException>(() => StartTagScan.Check(text.Replace("y=", "y='' z=", StringComparison.Ordinal), 2, "m", Token)).Reason);
    }

    /// <summary>
    /// 300k attributes spread over elements of 1,000 each: every one breaks the schema, but the
    /// report holds the first 100 and counts the rest, so the message does not grow with them.
    /// </summary>
    [Fact]
    public void ManySchemaProblems_AreCountedNotListed()
    {
        var text = new StringBuilder("<domaincheckpoint><disks>");
        for (var i = 0; i < 300; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $"<disk name='vd{i}' ").Append(Attributes(0, 1000)).Append("/>");
        }

        text.Append("</disks></domaincheckpoint>");

        var e = Assert.Throws<DocumentException>(() => DocumentValidator.Validate(text.ToString(), "many.xml", Token));

        Assert.Equal(DocumentErrorReason.SchemaViolation, e.Reason);
        Assert.Equal(101, e.Problems.Count);
        Assert.Equal("and 299900 more problems", e.Problems[^1]);
    }

    [Fact]
    public void Parsing_WithCancelledToken_Stops()
    {
        var text = "<domain type='kvm'><name>d</name><devices>" + string.Concat(Enumerable.Repeat("<x a='1'/>", 100_000)) + "</devices></domain>";

        Assert.Throws<OperationCanceledException>(() => DocumentValidator.Validate(text, "d.xml", new CancellationToken(canceled: true)));
        Assert.Throws<OperationCanceledException>(() => DomainParser.Parse(text, "d.xml", new CancellationToken(canceled: true)));
    }

    private static string Attributes(int first, int count)
        => string.Join(' ', Enumerable.Range(first, count).Select(i => string.Create(CultureInfo.InvariantCulture, $"a{i}='x'")));

    /// <summary>A stream like <c>/dev/zero</c> that counts what was taken from it.</summary>
    private sealed class EndlessStream : Stream
    {
        public long BytesRead { get; private set; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            buffer.AsSpan(offset, count).Fill((byte)' ');
            BytesRead += count;
            return count;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>A pipe whose writer never writes: a read that ignores the token and never completes.</summary>
    private sealed class SilentStream : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => new(new TaskCompletionSource<int>().Task);

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
