using System.Buffers.Binary;

namespace Tidemark.Backup.Repository;

/// <summary>
/// A chain file as <c>backup list</c> sees it: its size on disk, or why it has none to show.
/// Only the qcow2 magic is read, so listing stays cheap; <c>verify</c> checks the rest.
/// </summary>
public sealed record StoredChainFile(StoredChainFileState State, long? Bytes, string? Problem)
{
    /// <summary>"QFI\xfb", the first four bytes of every qcow2 file (big-endian).</summary>
    private const uint Qcow2Magic = 0x514649FB;

    /// <summary>The file cannot back a restore: missing, unreadable or not qcow2.</summary>
    public bool Damaged => State != StoredChainFileState.Present;

    /// <summary>Looks at the chain file at <paramref name="path"/>.</summary>
    public static StoredChainFile Inspect(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            Span<byte> magic = stackalloc byte[4];
            if (stream.ReadAtLeast(magic, magic.Length, throwOnEndOfStream: false) < magic.Length || BinaryPrimitives.ReadUInt32BigEndian(magic) != Qcow2Magic)
            {
                return new StoredChainFile(StoredChainFileState.NotQcow2, stream.Length, "chain file is not a qcow2 file");
            }

            return new StoredChainFile(StoredChainFileState.Present, stream.Length, null);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            // The words verify uses for the same damage.
            return new StoredChainFile(StoredChainFileState.Missing, null, "chain file missing");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new StoredChainFile(StoredChainFileState.Unreadable, null, $"chain file unreadable: {e.Message}");
        }
    }
}

/// <summary>What <see cref="StoredChainFile.Inspect"/> found.</summary>
public enum StoredChainFileState
{
    Present,
    Missing,
    Unreadable,
    NotQcow2,
}
