using System.Xml.Linq;
using Tidemark.Formats.Domains;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Checkpoints;

/// <summary>
/// The rules of libvirt's <c>domaincheckpoint.rng</c>, enforced in C#. libvirt validates every
/// checkpoint document against it, in every mode, before reading it (spec §2.1).
/// </summary>
internal static class CheckpointSchema
{
    public const string SchemaName = "domaincheckpoint.rng";

    /// <summary>Reports every rule that <paramref name="root"/> breaks.</summary>
    public static void Check(XElement root, SchemaReport report)
    {
        report.AllowAttributes(root);
        report.AllowChildren(root, "name", "description", "creationTime", "disks", "domain", "parent");

        if (report.AtMostOne(root, "name") is { } name)
        {
            report.Check(name, report.TextOnly(name), SchemaTypes.IsCheckpointName, "checkpoint name");
        }

        if (report.AtMostOne(root, "description") is { } description)
        {
            report.TextOnly(description);
        }

        if (report.AtMostOne(root, "creationTime") is { } creationTime)
        {
            report.Check(creationTime, report.TextOnly(creationTime), SchemaTypes.IsUnsignedLong, "unsignedLong");
        }

        if (report.AtMostOne(root, "parent") is { } parent)
        {
            report.AllowAttributes(parent);
            report.AllowChildren(parent, "name");
            var parentName = report.AtMostOne(parent, "name");
            if (parentName is null)
            {
                report.Add(parent, "missing required element <name>");
            }
            else
            {
                report.Check(parentName, report.TextOnly(parentName), SchemaTypes.IsCheckpointName, "checkpoint name");
            }
        }

        if (report.AtMostOne(root, "disks") is { } disks)
        {
            report.AllowAttributes(disks);
            report.AllowChildren(disks, "disk");
            if (!disks.Elements("disk").Any())
            {
                report.Add(disks, "needs at least one <disk>");
            }

            foreach (var disk in disks.Elements("disk"))
            {
                CheckDisk(disk, report);
            }
        }

        if (report.AtMostOne(root, "domain") is { } domain)
        {
            DomainSchema.Check(domain, report);
        }
    }

    private static void CheckDisk(XElement disk, SchemaReport report)
    {
        report.AllowAttributes(disk, "name", "checkpoint", "bitmap", "size");
        report.AllowChildren(disk);
        if (report.Required(disk, "name") is { } name)
        {
            report.Check(name, name.Value, v => SchemaTypes.IsDiskTargetDev(v) || SchemaTypes.IsAbsFilePath(v), "disk target name or absolute path");
        }

        if (disk.Attribute("size") is { } size)
        {
            report.Check(size, size.Value, SchemaTypes.IsUnsignedLong, "unsignedLong");
        }

        if (disk.Attribute("checkpoint") is { } checkpoint)
        {
            report.OneOf(checkpoint, "no", "bitmap");
            if (SchemaTypes.Token(checkpoint.Value) == "no")
            {
                foreach (var extra in new[] { disk.Attribute("bitmap"), disk.Attribute("size") })
                {
                    if (extra is not null)
                    {
                        report.Add(extra, "not allowed with checkpoint='no'");
                    }
                }
            }
        }
    }
}
