namespace Tidemark.Engine.Disks;

/// <summary>
/// Runs before a guest write, write-zeroes or discard reaches a running disk's image: the seam
/// where a backup job's copy-before-write copies the range's old content aside.
/// </summary>
/// <remarks>
/// The guest disk calls <see cref="BeforeGuestWriteAsync"/> after the request has passed the
/// domain's instant barrier and before any byte of it reaches the image. When the call
/// returns, the old content of every cluster the range touches that the job still needs has
/// been copied aside, and no job read of those clusters is still in flight against the live
/// image (design.md, "Copy before write"). If the call throws, the guest request fails with
/// that error and the image is not touched (the job's failure policy decides whether it
/// throws or fails the job instead).
/// </remarks>
public interface IGuestWriteInterceptor
{
    /// <summary>Copies aside what the job still needs in [<paramref name="offset"/>, offset + length).</summary>
    ValueTask BeforeGuestWriteAsync(long offset, long length, CancellationToken cancellationToken);
}
