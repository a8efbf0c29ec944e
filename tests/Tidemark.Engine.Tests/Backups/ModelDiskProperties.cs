using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Nbd.Client;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Backups;

/// <summary>
/// Property: whatever the interleaving of guest writes, write-zeroes and trims (through an NBD
/// client of the running domain), checkpoint creation and deletion, and full or incremental
/// push backups (each with its own checkpoint, the guest writing on while the job runs), every
/// point a push captured — its full target, or an incremental target rebased onto the target
/// of the backup that created its base checkpoint — is, by <c>qemu-img compare</c>, the model
/// disk at the instant the push began.
/// </summary>
/// <remarks>
/// Each step is one generated integer: its low three bits choose the operation, the rest its
/// offset, length, pattern or checkpoint. A trim leaves unspecified content (NBD), so the model
/// takes what the guest reads back afterwards. The run is seeded; FsCheck prints the replay
/// seed and the shrunk steps of a failure.
/// </remarks>
public sealed class ModelDiskProperties
{
    private const int Size = 1 << 20;
    private const int Block = 4096;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [FsCheck.Xunit.Property(MaxTest = 100, EndSize = 24, Replay = "(20261130,1013904223)")]
    public async Task EveryRestoredPoint_IsTheModelDiskAtItsInstant(int[] steps)
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("m", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var run = new Run(test, domain, await Guest.ConnectAsync(domain.Running!.SocketPath, "vda", Ct));
        await using (run.Client)
        {
            foreach (var step in steps)
            {
                await run.StepAsync(step & int.MaxValue);
            }

            await run.WaitForJobAsync();
        }

        await domain.DestroyAsync(Ct);
        await run.AssertPointsAsync();
    }

    /// <summary>A point captured by a push: its target, the model at its instant, and the point its incremental builds on.</summary>
    private sealed record Point(string Target, byte[] Instant, Point? Base);

    private sealed class Run(TestHost test, Domain domain, NbdClient client)
    {
        private readonly byte[] _model = new byte[Size];
        private readonly List<Point> _points = [];

        // Every checkpoint still defined, and the point of the push that created it (null for a plain one).
        private readonly Dictionary<string, Point?> _checkpoints = [];
        private DomainBackup? _job;
        private int _names;

        public NbdClient Client => client;

        public async Task StepAsync(int x)
        {
            var (kind, rest) = (x & 7, x >> 3);
            var offset = (long)(rest % (Size / Block)) * Block;
            var length = (int)Math.Min(Size - offset, ((rest >> 8) % 32 + 1) * Block);
            switch (kind)
            {
                case <= 2:
                    {
                        var data = new byte[length];
                        Array.Fill(data, (byte)((rest >> 13) % 255 + 1));
                        await client.WriteAsync(offset, data, cancellationToken: Ct);
                        data.CopyTo(_model, offset);
                        break;
                    }

                case 3:
                    await client.WriteZeroesAsync(offset, (uint)length, cancellationToken: Ct);
                    Array.Clear(_model, (int)offset, length);
                    break;
                case 4:
                    await client.TrimAsync(offset, (uint)length, cancellationToken: Ct);
                    await client.ReadAsync(offset, _model.AsMemory((int)offset, length), cancellationToken: Ct);
                    break;
                case 5:
                    await WaitForJobAsync();
                    await domain.Checkpoints.CreateAsync($"<domaincheckpoint><name>c{++_names}</name></domaincheckpoint>", cancellationToken: Ct);
                    _checkpoints[$"c{_names}"] = null;
                    break;
                case 6 when _checkpoints.Count > 0:
                    {
                        await WaitForJobAsync();
                        var name = _checkpoints.Keys.Order(StringComparer.Ordinal).ElementAt(rest % _checkpoints.Count);
                        await domain.Checkpoints.DeleteAsync(name, cancellationToken: Ct);
                        _checkpoints.Remove(name);
                        break;
                    }

                case 7:
                    await BeginPushAsync(rest);
                    break;
            }
        }

        public async Task WaitForJobAsync()
        {
            if (_job is { } job)
            {
                var info = await job.Completion.WaitAsync(TimeSpan.FromMinutes(1), Ct);
                Assert.True(info.Success, $"the push failed: {info.ErrorMessage}");
                _job = null;
            }
        }

        public async Task AssertPointsAsync()
        {
            var instants = new List<string>();
            foreach (var (point, i) in _points.Select((p, i) => (p, i)))
            {
                if (point.Base is { } basePoint)
                {
                    // The target's header names the live disk as its backing (as libvirt writes
                    // it); a restore puts the previous backup there instead.
                    await Peer.RunCheckedAsync("qemu-img", "rebase", "-u", "-f", "qcow2", "-b", basePoint.Target, "-F", "qcow2", point.Target);
                }

                var instant = test.Directory.File($"instant{i}.raw");
                await File.WriteAllBytesAsync(instant, point.Instant, Ct);
                var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", point.Target, instant]);
                Assert.True(compare.ExitCode == 0, $"point {i} ({(point.Base is null ? "full" : "incremental")}): {compare.Stdout}{compare.Stderr}");
            }
        }

        private async Task BeginPushAsync(int rest)
        {
            await WaitForJobAsync();
            var bases = _checkpoints.Where(c => c.Value is not null).Select(c => c.Key).Order(StringComparer.Ordinal).ToList();
            var from = bases.Count > 0 && rest % 3 != 0 ? bases[rest % bases.Count] : null;
            var name = $"b{++_names}";
            var target = test.Directory.File($"{name}.qcow2");
            var incremental = from is null ? "" : $"<incremental>{from}</incremental>";
            _job = await domain.BeginBackupAsync(
                $"<domainbackup mode='push'>{incremental}<disks><disk name='vda' type='file'><target file='{target}'/><driver type='qcow2'/></disk></disks></domainbackup>",
                $"<domaincheckpoint><name>{name}</name></domaincheckpoint>",
                cancellationToken: Ct);

            // No guest request was in flight: the model now is the job's instant. The guest
            // goes on writing while the job copies.
            var point = new Point(target, (byte[])_model.Clone(), from is null ? null : _checkpoints[from]);
            _points.Add(point);
            _checkpoints[name] = point;
        }
    }
}
