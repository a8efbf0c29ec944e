namespace Tidemark.Storage;

/// <summary>
/// How a disk's byte size is taken. QEMU's block layer counts a disk in 512-byte sectors
/// (<c>BDRV_SECTOR_SIZE</c>): <c>qemu-img create</c> rounds the size it is given up to a
/// sector (<c>ROUND_UP(size, BDRV_SECTOR_SIZE)</c> in <c>qcow2_co_create_opts</c> and
/// <c>raw_co_create</c>), a raw file's length is read as <c>DIV_ROUND_UP(length, 512)</c>
/// sectors (the tail reads as zeroes), and a qcow2 header's size as <c>size / 512</c>
/// sectors. Every size Tidemark takes goes through here, so what it writes reads back the same
/// in QEMU: a 1001-byte request is a 1024-byte disk, never one QEMU shortens to 512.
/// </summary>
public static class DiskSize
{
    /// <summary>QEMU's <c>BDRV_SECTOR_SIZE</c>.</summary>
    public const int SectorSize = 512;

    /// <summary>A size asked for (create, convert target, a raw file's length), rounded up to whole sectors.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bytes"/> is negative or too large to round up.</exception>
    public static long RoundUp(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, long.MaxValue - (SectorSize - 1));
        return (bytes + SectorSize - 1) & ~(long)(SectorSize - 1);
    }

    /// <summary>The disk size QEMU sees in a qcow2 header's size field: whole sectors only.</summary>
    public static long FromQcow2Header(long headerSize) => headerSize & ~(long)(SectorSize - 1);
}
