using Tidemark.Nbd;
using Tidemark.Nbd.Server;
using Tidemark.Storage;

namespace Tidemark.Fuzz;

/// <summary>
/// The NBD server's byte stream from a client: the input is everything a client sends (flags,
/// options, requests), served against a 1 MiB raw export; what the server sends back is
/// dropped. A connection may end for any reason the protocol allows; a failure the server logs
/// as unexpected is a finding.
/// </summary>
internal sealed class NbdRequestTarget : FuzzTarget, IDisposable
{
    private readonly string _directory;
    private readonly RawImage _image;
    private readonly NbdServer _server;
    private readonly FindingLog _log = new();

    public NbdRequestTarget()
    {
        _directory = Directory.CreateTempSubdirectory("tidemark-fuzz-").FullName;
        _image = RawImage.Create(Path.Combine(_directory, "disk.raw"), 1 << 20);
        _server = new NbdServer(
            new NbdServerOptions(),
            [new NbdExport("", _image) { Description = "fuzz" }, new NbdExport("ro", _image) { ReadOnly = true }],
            _log);
    }

    // SharpFuzz calls a synchronous delegate; the server is async all the way down, so this
    // entry point alone waits.
    public override void Run(byte[] input)
    {
        _server.ServeAsync(new ClientBytes(input), "fuzz").GetAwaiter().GetResult();
        _log.ThrowIfFailed();
    }

    public void Dispose()
    {
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _image.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>A connection whose client sends the input and then closes; the server's replies go nowhere.</summary>
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

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => new(Read(buffer.Span));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => Task.FromResult(Read(buffer.AsSpan(offset, count)));

        public override void Write(byte[] buffer, int offset, int count)
        {
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => Task.CompletedTask;

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
