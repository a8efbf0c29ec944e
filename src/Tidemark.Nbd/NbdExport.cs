using Tidemark.Storage;

namespace Tidemark.Nbd;

/// <summary>
/// One export of an <see cref="Server.NbdServer"/>: a name, a block image and what the server may say
/// about it. The server never disposes <see cref="Image"/>; the export's owner does, after the
/// server has stopped.
/// </summary>
public sealed class NbdExport
{
    /// <param name="name">The export name clients ask for ("" is the default export).</param>
    /// <param name="image">The image served.</param>
    public NbdExport(string name, IBlockImage image)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(image);
        if (System.Text.Encoding.UTF8.GetByteCount(name) > Protocol.NbdWire.MaxStringLength)
        {
            throw new ArgumentException($"export name is longer than {Protocol.NbdWire.MaxStringLength} bytes", nameof(name));
        }

        Name = name;
        Image = image;
    }

    /// <summary>The name clients ask for.</summary>
    public string Name { get; }

    /// <summary>The image read and written through the export.</summary>
    public IBlockImage Image { get; }

    /// <summary>Free text shown by NBD_OPT_LIST and NBD_INFO_DESCRIPTION; none when null.</summary>
    public string? Description { get; init; }

    /// <summary>
    /// Refuse writes, zeroes and trims. An export of a read-only image is always read-only.
    /// </summary>
    public bool ReadOnly
    {
        get => field || Image.IsReadOnly;
        init;
    }

    /// <summary>
    /// Dirty bitmaps offered as <c>qemu:dirty-bitmap:NAME</c> contexts, in the order the
    /// server numbers them.
    /// </summary>
    public IReadOnlyList<IDirtyBitmapSource> DirtyBitmaps { get; init; } = [];

    /// <summary>Where the export's requests are counted (QEMU's block accounting); none when null.</summary>
    public NbdExportStatistics? Statistics { get; init; }

    /// <summary>Offer <c>qemu:allocation-depth</c> (qemu-nbd's <c>-A</c>).</summary>
    public bool AllocationDepth { get; init; }

    /// <summary>
    /// Advertise CAN_MULTI_CONN. Safe when every connection reaches the same image object, whose
    /// flush makes every completed write durable (true of Tidemark's images); off by default,
    /// as qemu-nbd leaves it off unless <c>-e</c> allows more than one client (formats.md §4.8).
    /// </summary>
    public bool MultiConn { get; init; }

    /// <summary>
    /// Reads go to the image whole, even where it reads as zeroes, instead of those ranges being
    /// answered as OFFSET_HOLE chunks without reading: for an image whose reads have an effect
    /// (a copy-on-read disk copies what every read covers).
    /// </summary>
    public bool ReadsWhole { get; init; }
}
