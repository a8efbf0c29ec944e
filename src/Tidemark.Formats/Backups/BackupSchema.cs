using System.Xml.Linq;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Backups;

/// <summary>
/// The rules of libvirt's <c>domainbackup.rng</c> (with the parts of <c>domaincommon.rng</c>
/// and <c>storagecommon.rng</c> it uses: seclabel, LUKS encryption, formats, host names),
/// enforced in C#. libvirt validates every public backup document against it (spec §3.2).
/// </summary>
internal static class BackupSchema
{
    public const string SchemaName = "domainbackup.rng";

    public static void Check(XElement root, SchemaReport report)
    {
        report.AllowAttributes(root, "mode");
        report.AllowChildren(root, "incremental", "server", "disks");
        var pull = false;
        if (root.Attribute("mode") is { } mode)
        {
            report.OneOf(mode, "push", "pull");
            pull = SchemaTypes.Token(mode.Value) == "pull";
        }

        if (report.AtMostOne(root, "incremental") is { } incremental)
        {
            report.TextOnly(incremental);
        }

        var server = report.AtMostOne(root, "server");
        if (pull && server is null)
        {
            report.Add(root, "missing required element <server> (a pull backup needs one)");
        }
        else if (!pull && server is not null)
        {
            report.Add(server, "allowed only with mode='pull'");
        }
        else if (server is not null)
        {
            CheckServer(server, report);
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
                CheckDisk(disk, pull, report);
            }
        }
    }

    private static void CheckServer(XElement server, SchemaReport report)
    {
        report.AllowAttributes(server, "transport", "tls", "name", "port", "socket", "fdgroup");
        report.AllowChildren(server);
        if (server.Attribute("tls") is { } tls)
        {
            report.OneOf(tls, "yes", "no");
        }

        var transport = server.Attribute("transport") is { } t ? SchemaTypes.Token(t.Value) : "tcp";
        string[] allowed;
        switch (transport)
        {
            case "tcp":
                allowed = ["transport", "tls", "name", "port"];
                if (report.Required(server, "name") is { } name)
                {
                    report.Check(name, name.Value, SchemaTypes.IsHostName, "DNS name or IP address");
                }

                if (server.Attribute("port") is { } port)
                {
                    report.Check(port, port.Value, SchemaTypes.IsUnsignedInt, "unsignedInt");
                }

                break;
            case "unix":
                allowed = ["transport", "tls", "socket"];
                if (report.Required(server, "socket") is { } socket)
                {
                    report.Check(socket, socket.Value, SchemaTypes.IsAbsFilePath, "absolute path");
                }

                break;
            case "fd":
                allowed = ["transport", "tls", "fdgroup"];
                report.Required(server, "fdgroup");
                break;
            default:
                report.OneOf(server.Attribute("transport")!, "tcp", "unix", "fd");
                return;
        }

        foreach (var attribute in server.Attributes())
        {
            if (Array.IndexOf(allowed, attribute.Name.LocalName) < 0 && attribute.Name.Namespace == XNamespace.None)
            {
                report.Add(attribute, $"not allowed with transport '{transport}'");
            }
        }
    }

    private static void CheckDisk(XElement disk, bool pull, SchemaReport report)
    {
        var storeElement = pull ? "scratch" : "target";
        if (pull)
        {
            report.AllowAttributes(disk, "name", "backup", "type", "backupmode", "incremental", "exportname", "exportbitmap");
        }
        else
        {
            report.AllowAttributes(disk, "name", "backup", "type", "backupmode", "incremental");
        }

        report.AllowChildren(disk, storeElement, "driver");
        if (report.Required(disk, "name") is { } name)
        {
            report.Check(name, name.Value, SchemaTypes.IsDiskTargetDev, "disk target name");
        }

        if (disk.Attribute("backupmode") is { } backupMode)
        {
            report.OneOf(backupMode, "full", "incremental");
            if (SchemaTypes.Token(backupMode.Value) == "full" && disk.Attribute("incremental") is { } incremental)
            {
                report.Add(incremental, "not allowed with backupmode='full'");
            }
        }

        var backup = disk.Attribute("backup");
        if (backup is not null)
        {
            report.OneOf(backup, "yes", "no");
        }

        var type = disk.Attribute("type");
        if (type is not null)
        {
            report.OneOf(type, "file", "block");
        }

        var store = report.AtMostOne(disk, storeElement);
        var driver = report.AtMostOne(disk, "driver");
        var excluded = backup is not null && SchemaTypes.Token(backup.Value) == "no";
        if (excluded)
        {
            if (type is not null)
            {
                report.Add(type, "not allowed with backup='no'");
            }

            foreach (var child in disk.Elements())
            {
                report.Add(child, "not allowed with backup='no'");
            }

            return;
        }

        var block = type is not null && SchemaTypes.Token(type.Value) == "block";
        if (type is null)
        {
            if (pull && backup is not null)
            {
                report.Add(backup, "needs type='file' or type='block' in a pull backup");
            }

            if (!pull)
            {
                foreach (var child in disk.Elements())
                {
                    report.Add(child, "needs type='file' or type='block' on the disk");
                }
            }
        }

        if (pull && store is null && (block || driver is not null))
        {
            report.Add(disk, $"missing required element <{storeElement}>");
        }

        if (store is not null)
        {
            CheckStore(store, block ? "dev" : "file", report);
        }

        if (driver is not null)
        {
            report.AllowAttributes(driver, "type");
            report.AllowChildren(driver);
            if (report.Required(driver, "type") is { } format)
            {
                if (pull)
                {
                    report.OneOf(format, "qcow2");
                }
                else
                {
                    report.OneOf(format, [.. StorageFormatNames.SchemaNames]);
                }
            }
        }
    }

    private static void CheckStore(XElement store, string pathAttribute, SchemaReport report)
    {
        report.AllowAttributes(store, pathAttribute);
        report.AllowChildren(store, "seclabel", "encryption");
        if (report.Required(store, pathAttribute) is { } path)
        {
            report.Check(path, path.Value, SchemaTypes.IsAbsFilePath, "absolute path");
        }

        foreach (var label in store.Elements("seclabel"))
        {
            CheckSecurityLabel(label, report);
        }

        if (report.AtMostOne(store, "encryption") is { } encryption)
        {
            CheckEncryption(encryption, report);
        }
    }

    private static void CheckSecurityLabel(XElement label, SchemaReport report)
    {
        report.AllowAttributes(label, "model", "relabel", "labelskip");
        report.AllowChildren(label, "label");
        var relabel = label.Attribute("relabel");
        var labelSkip = label.Attribute("labelskip");
        if (relabel is not null)
        {
            report.OneOf(relabel, "yes", "no");
        }

        if (labelSkip is not null)
        {
            report.OneOf(labelSkip, "yes");
        }

        var labels = label.Elements("label").ToList();
        foreach (var text in labels)
        {
            report.TextOnly(text);
        }

        // One of: relabel='no'; labelskip='yes'; or (relabel='yes') with at least one <label>.
        var noRelabel = relabel is not null && SchemaTypes.Token(relabel.Value) == "no";
        if (noRelabel || labelSkip is not null)
        {
            if (relabel is not null && labelSkip is not null)
            {
                report.Add(labelSkip, "not allowed together with relabel");
            }

            foreach (var text in labels)
            {
                report.Add(text, noRelabel ? "not allowed with relabel='no'" : "not allowed with labelskip='yes'");
            }
        }
        else if (labels.Count == 0)
        {
            report.Add(label, "needs relabel='no', labelskip='yes' or a <label>");
        }
    }

    private static void CheckEncryption(XElement encryption, SchemaReport report)
    {
        report.AllowAttributes(encryption, "format", "engine");
        report.AllowChildren(encryption, "secret", "cipher", "ivgen");
        if (report.Required(encryption, "format") is { } format)
        {
            report.OneOf(format, "luks");
        }

        if (encryption.Attribute("engine") is { } engine)
        {
            report.OneOf(engine, "qemu");
        }

        var secret = report.AtMostOne(encryption, "secret");
        if (secret is null)
        {
            report.Add(encryption, "missing required element <secret>");
        }
        else
        {
            report.AllowAttributes(secret, "type", "uuid", "usage");
            report.AllowChildren(secret);
            if (report.Required(secret, "type") is { } type)
            {
                report.OneOf(type, "passphrase");
            }

            var uuid = secret.Attribute("uuid");
            var usage = secret.Attribute("usage");
            if (uuid is null && usage is null)
            {
                report.Add(secret, "needs a uuid or a usage attribute");
            }
            else if (uuid is not null && usage is not null)
            {
                report.Add(usage, "not allowed together with uuid");
            }

            if (uuid is not null)
            {
                report.Check(uuid, uuid.Value, SchemaTypes.IsUuid, "UUID");
            }
        }

        var cipher = report.AtMostOne(encryption, "cipher");
        var ivgen = report.AtMostOne(encryption, "ivgen");
        if ((cipher is null) != (ivgen is null))
        {
            report.Add(encryption, "<cipher> and <ivgen> go together");
        }

        if (cipher is not null)
        {
            report.AllowAttributes(cipher, "name", "size", "mode", "hash");
            report.AllowChildren(cipher);
            report.Required(cipher, "name");
            if (report.Required(cipher, "size") is { } size)
            {
                report.Check(size, size.Value, SchemaTypes.IsUnsignedInt, "unsignedInt");
            }

            if ((cipher.Attribute("mode") is null) != (cipher.Attribute("hash") is null))
            {
                report.Add(cipher, "mode and hash go together");
            }
        }

        if (ivgen is not null)
        {
            report.AllowAttributes(ivgen, "name", "hash");
            report.AllowChildren(ivgen);
            report.Required(ivgen, "name");
        }
    }
}
