namespace Tidemark.Storage.Qcow2;

/// <summary>What <c>qemu-img create -f qcow2</c> takes: size, geometry and backing file.</summary>
public sealed record Qcow2CreateOptions
{
    /// <summary>Virtual size in bytes.</summary>
    public required long Size { get; init; }

    /// <summary>512 B .. 2 MiB, a power of two (default 64 KiB).</summary>
    public int ClusterSize { get; init; } = 1 << Qcow2Layout.DefaultClusterBits;

    /// <summary>3 (QEMU's "1.1", the default) or 2 ("0.10").</summary>
    public int Version { get; init; } = 3;

    /// <summary>1, 2, 4, 8, 16, 32 or 64 (v3 only; v2 is always 16).</summary>
    public int RefcountBits { get; init; } = 16;

    /// <summary>The backing file name stored verbatim (relative names resolve from the image's directory).</summary>
    public string? BackingFile { get; init; }

    /// <summary>The backing file's format, stored in the backing format extension.</summary>
    public ImageFormat? BackingFormat { get; init; }

    /// <summary>zstd instead of deflate for compressed clusters (v3 only).</summary>
    public bool Zstd { get; init; }
}
