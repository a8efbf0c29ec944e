namespace Tidemark.Storage;

/// <summary>The image formats Tidemark reads and writes.</summary>
public enum ImageFormat
{
    Raw,
    Qcow2,
}

/// <summary>Format names as qemu-img spells them.</summary>
public static class ImageFormatNames
{
    public static string ToName(this ImageFormat format) => format switch
    {
        ImageFormat.Raw => "raw",
        ImageFormat.Qcow2 => "qcow2",
        _ => throw new ArgumentOutOfRangeException(nameof(format)),
    };

    /// <summary>Parses "raw" or "qcow2".</summary>
    /// <exception cref="StorageException">Any other name, quoted in the message.</exception>
    public static ImageFormat Parse(string name) => name switch
    {
        "raw" => ImageFormat.Raw,
        "qcow2" => ImageFormat.Qcow2,
        _ => throw new StorageException(StorageErrorReason.UnsupportedFeature, $"Unknown driver '{name}' (supported: raw, qcow2)"),
    };
}
