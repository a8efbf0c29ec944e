namespace Tidemark.Engine.Backups;

/// <summary>
/// A run of clusters someone holds: a claim (being copied) or a lease (being read from the live
/// image). <see cref="Done"/> completes when the holder lets go.
/// </summary>
internal sealed class ClusterRun(long offset, long end)
{
    public long Offset { get; } = offset;

    public long End { get; } = end;

    public long Length => End - Offset;

    public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public bool Contains(long position) => position >= Offset && position < End;

    public bool Intersects(long start, long end) => start < End && Offset < end;

    public bool Intersects(ClusterRun other) => Intersects(other.Offset, other.End);
}
