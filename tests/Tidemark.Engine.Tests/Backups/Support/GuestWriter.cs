using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups.Support;

/// <summary>
/// The guest: qemu-io processes writing the same clusters over NBD, round after round, with a
/// new pattern each round, until stopped. The writes cover data, a zero run and holes, whole
/// and partial clusters.
/// </summary>
internal sealed class GuestWriter : IAsyncDisposable
{
    /// <summary>(offset, length) of every write of a round.</summary>
    public static readonly (long Offset, long Length)[] Writes =
    [
        (0, 4096), (1 << 20, 65536), ((2 << 20) + 4096, 8192), (3 << 20, 512), (9 << 20, 1 << 20),
        (16 << 20, 131072), ((20 << 20) + 512, 4096), (24 << 20, 65536), ((30 << 20) + 4096, 4096),
    ];

    /// <summary>Written only once <see cref="WriteLateHole"/> is set: a hole at the instant that the guest fills afterwards.</summary>
    public const long LateHole = 31 << 20;

    private readonly CancellationTokenSource _stop = new();
    private readonly string _uri;
    private readonly Task _loop;
    private int _rounds;
    private int _lateHole;

    private GuestWriter(string uri)
    {
        _uri = uri;
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>Rounds completed.</summary>
    public int Rounds => Volatile.Read(ref _rounds);

    public bool WriteLateHole
    {
        get => Volatile.Read(ref _lateHole) != 0;
        set => Volatile.Write(ref _lateHole, value ? 1 : 0);
    }

    public static GuestWriter Start(string uri) => new(uri);

    /// <summary>Waits until <paramref name="more"/> rounds have completed after this call (a round in progress does not count).</summary>
    public async Task WaitRoundsAsync(int more)
    {
        var target = Rounds + more + 1;
        while (Rounds < target)
        {
            if (_loop.IsCompleted)
            {
                await _loop;
            }

            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stop.Dispose();
    }

    private async Task LoopAsync()
    {
        for (var round = 0; !_stop.IsCancellationRequested; round++)
        {
            var pattern = 0x10 + (round % 200);
            var arguments = new List<string> { "-f", "raw" };
            foreach (var (offset, length) in Writes)
            {
                arguments.AddRange(["-c", $"write -P {pattern} {offset} {length}"]);
            }

            if (WriteLateHole)
            {
                arguments.AddRange(["-c", $"write -P {pattern} {LateHole} 65536"]);
            }

            arguments.Add(_uri);
            var result = await Peer.RunAsync("qemu-io", arguments);
            if (_stop.IsCancellationRequested)
            {
                return;
            }

            result.EnsureSuccess();
            Assert.DoesNotContain("failed", result.Stdout + result.Stderr, StringComparison.OrdinalIgnoreCase);
            Interlocked.Increment(ref _rounds);
        }
    }
}
