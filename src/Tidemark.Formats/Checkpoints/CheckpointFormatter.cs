using System.Globalization;
using Tidemark.Formats.Domains;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Checkpoints;

/// <summary>
/// Writes a <c>&lt;domaincheckpoint&gt;</c> byte for byte as libvirt's
/// <c>virDomainCheckpointDefFormat</c> does (spec §2.4).
/// </summary>
public static class CheckpointFormatter
{
    private const CheckpointFormatFlags KnownFlags = CheckpointFormatFlags.Secure | CheckpointFormatFlags.NoDomain | CheckpointFormatFlags.Size;

    /// <summary>
    /// Formats <paramref name="checkpoint"/>. Order: name, description, parent, creationTime
    /// (if not 0), disks, domain (unless <see cref="CheckpointFormatFlags.NoDomain"/>).
    /// </summary>
    /// <remarks>
    /// The embedded domain is written back as it was read, re-indented, its secure data only
    /// with <see cref="CheckpointFormatFlags.Secure"/> (<see cref="DomainSecureData"/>), as
    /// libvirt's virDomainCheckpointDefFormat passes VIR_DOMAIN_DEF_FORMAT_SECURE on.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">Unknown flag bits.</exception>
    public static string Format(CheckpointDefinition checkpoint, CheckpointFormatFlags flags = CheckpointFormatFlags.Secure)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if ((flags & ~KnownFlags) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(flags), flags, $"unsupported flags (0x{(int)(flags & ~KnownFlags):x})");
        }

        var w = new LibvirtXmlWriter();
        w.Open("domaincheckpoint");
        w.TextElement("name", checkpoint.Name);
        w.TextElement("description", checkpoint.Description);
        if (checkpoint.Parent is not null)
        {
            w.Open("parent");
            w.TextElement("name", checkpoint.Parent);
            w.Close("parent");
        }

        if (checkpoint.CreationTime != 0)
        {
            w.TextElement("creationTime", checkpoint.CreationTime);
        }

        if (checkpoint.Disks.Count > 0)
        {
            w.Open("disks");
            foreach (var disk in checkpoint.Disks)
            {
                // size only for a disk with a bitmap, when asked for and computed.
                var size = flags.HasFlag(CheckpointFormatFlags.Size) && disk.Bitmap is not null && disk.Size is { } s
                    ? s.ToString(CultureInfo.InvariantCulture)
                    : null;
                w.Empty(
                    "disk",
                    ("name", disk.Name),
                    ("checkpoint", CheckpointTypeNames.Of(disk.Type)),
                    ("bitmap", disk.Bitmap),
                    ("size", size));
            }

            w.Close("disks");
        }

        if (checkpoint.Domain is not null && !flags.HasFlag(CheckpointFormatFlags.NoDomain))
        {
            DomainFormatter.Write(w, checkpoint.Domain, flags.HasFlag(CheckpointFormatFlags.Secure) ? DomainFormatFlags.Secure : DomainFormatFlags.None);
        }

        w.Close("domaincheckpoint");
        return w.ToString();
    }
}
