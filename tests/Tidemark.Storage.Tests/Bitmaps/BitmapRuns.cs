using Tidemark.Storage.Bitmaps;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Bitmaps;

/// <summary>A <see cref="DirtyBitmap"/>'s whole content in the shape nbdinfo reports, for comparing with QEMU.</summary>
internal static class BitmapRuns
{
    public static List<DirtyRun> Runs(this DirtyBitmap bitmap) =>
        QemuNbdExport.Coalesce(bitmap.EnumerateExtents(0, bitmap.Size).Select(e => new DirtyRun(e.Offset, e.Length, e.Dirty)));
}
