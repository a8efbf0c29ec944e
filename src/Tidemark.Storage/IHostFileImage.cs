namespace Tidemark.Storage;

/// <summary>
/// An image whose guest bytes are a host file's bytes at the same offsets (a raw file). A sender
/// can then let the kernel copy a range from the page cache to a socket (<c>sendfile</c>)
/// instead of reading it into user memory and writing it out again, which halves the copying
/// per byte served.
/// </summary>
public interface IHostFileImage : IBlockImage
{
    /// <summary>
    /// The host file holding <paramref name="offset"/>..+<paramref name="length"/> at the same
    /// offsets, or false when the range is not entirely inside the file as it is now (a file
    /// that shrank under the image reads as zeroes there, which only
    /// <see cref="IBlockImage.ReadAsync"/> provides). The stream belongs to the image: use only
    /// its handle, for positional reads, and never dispose it. A file can still shrink after
    /// the call, so a sender must check that it sent every byte it asked for.
    /// </summary>
    bool TryGetHostFile(long offset, long length, out FileStream file);
}
