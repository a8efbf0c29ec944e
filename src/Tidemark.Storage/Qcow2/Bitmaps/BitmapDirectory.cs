namespace Tidemark.Storage.Qcow2.Bitmaps;

/// <summary>
/// The bitmap directory (formats.md §2.2): <c>nb_bitmaps</c> variable-length entries back to
/// back, filling exactly <c>bitmap_directory_size</c> bytes.
/// </summary>
internal static class BitmapDirectory
{
    /// <summary>
    /// Parses and checks a whole directory: every entry (QEMU check_dir_entry), the count
    /// against the header extension, the exact end, and unique names.
    /// </summary>
    /// <exception cref="StorageException">The directory breaks a rule; the message names the entry and its host offset.</exception>
    public static List<BitmapDirectoryEntry> Parse(ReadOnlySpan<byte> directory, BitmapsExtension extension, int clusterSize, long virtualSize)
    {
        var entries = new List<BitmapDirectoryEntry>((int)Math.Min(extension.BitmapCount, 1024));
        var names = new HashSet<string>(StringComparer.Ordinal);
        var position = 0;
        while (position < directory.Length)
        {
            if (entries.Count == extension.BitmapCount)
            {
                throw new StorageException(
                    StorageErrorReason.Corrupt,
                    $"bitmap directory at offset 0x{extension.DirectoryOffset:x}: More bitmaps found than specified in header extension: more bitmaps found than the {extension.BitmapCount} the header extension specifies");
            }

            var (entry, size) = BitmapDirectoryEntry.Read(directory, position, extension.DirectoryOffset, entries.Count, clusterSize, virtualSize);
            if (!names.Add(entry.Name))
            {
                throw new StorageException(
                    StorageErrorReason.Corrupt,
                    $"bitmap directory entry {entries.Count} at offset 0x{extension.DirectoryOffset + position:x}: a bitmap named '{entry.Name}' appears twice");
            }

            entries.Add(entry);
            position += size;
        }

        if (entries.Count != extension.BitmapCount)
        {
            throw new StorageException(
                StorageErrorReason.Corrupt,
                $"bitmap directory at offset 0x{extension.DirectoryOffset:x}: Less bitmaps found than specified in header extension: {entries.Count} bitmaps found, fewer than the {extension.BitmapCount} the header extension specifies");
        }

        return entries;
    }

    /// <summary>Bytes of the directory holding <paramref name="entries"/>.</summary>
    public static long SizeOf(IEnumerable<BitmapDirectoryEntry> entries) => entries.Sum(e => (long)e.EncodedSize);

    /// <summary>Encodes a directory, zero-padded to whole clusters.</summary>
    public static byte[] Encode(IReadOnlyList<BitmapDirectoryEntry> entries, int clusterSize)
    {
        var size = SizeOf(entries);
        var bytes = new byte[(size + clusterSize - 1) / clusterSize * clusterSize];
        var position = 0;
        foreach (var entry in entries)
        {
            position += entry.Write(bytes.AsSpan(position));
        }

        return bytes;
    }
}
