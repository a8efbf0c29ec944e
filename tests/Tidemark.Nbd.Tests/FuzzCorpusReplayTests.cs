using Tidemark.Nbd.Server;
using Tidemark.Nbd.Tests.Support;
using Tidemark.Storage;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests;

/// <summary>
/// The NBD fuzzing corpus (<c>bench/fuzz/corpus/nbd-requests</c>) and any input the fuzzer
/// found (<c>bench/fuzz/findings/nbd-requests</c>) replayed as a client's byte stream, as the
/// harness feeds them: each connection ends the way the protocol allows, with no failure the
/// server has to log as unexpected.
/// </summary>
public sealed class FuzzCorpusReplayTests
{
    [Fact]
    public async Task NbdRequestInputs_EndTheirConnectionWithoutAnUnexpectedFailure()
    {
        var inputs = FuzzInputs.Of("nbd-requests");
        using var dir = new TempDirectory("nbd-fuzz-replay");
        await using var image = RawImage.Create(dir.File("disk.raw"), 1 << 20);
        var log = new LogRecorder();
        await using var server = new NbdServer(
            new NbdServerOptions(),
            [new NbdExport("", image) { Description = "fuzz" }, new NbdExport("ro", image) { ReadOnly = true }],
            log);

        foreach (var input in inputs)
        {
            await server.ServeAsync(new ClientBytes(await File.ReadAllBytesAsync(input, TestContext.Current.CancellationToken)), Path.GetFileName(input), TestContext.Current.CancellationToken);
        }

        Assert.True(inputs.Count >= 5, $"only {inputs.Count} inputs");
        Assert.DoesNotContain(log.Lines, l => l.StartsWith("Warning", StringComparison.Ordinal) || l.StartsWith("Error", StringComparison.Ordinal) || l.StartsWith("Critical", StringComparison.Ordinal));
    }

    /// <summary>A connection whose client sends the input, then closes; the server's replies go nowhere.</summary>
    private sealed class ClientBytes(byte[] input) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = Math.Min(buffer.Length, input.Length - _position);
            input.AsSpan(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => new(Read(buffer.Span));

        public override void Write(byte[] buffer, int offset, int count)
        {
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
