using System.Globalization;
using System.Xml.Linq;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Backups;

/// <summary>
/// Reads a <c>&lt;domainbackup&gt;</c> (spec §3.2, libvirt <c>virDomainBackupDefParse</c>). The
/// public form is schema-checked first; the internal (status XML) form is not, so every value
/// it reads is checked here as libvirt's parser checks it.
/// </summary>
public static class BackupParser
{
    private static readonly string[] OtherStorageTypes = ["network", "dir", "volume", "nvme", "vhostuser", "vhostvdpa", "none"];

    /// <summary>Parses <paramref name="xml"/> in <paramref name="mode"/>.</summary>
    /// <exception cref="DocumentException">Malformed XML, another root, a schema violation or a value libvirt refuses.</exception>
    public static BackupDefinition Parse(string xml, BackupXmlMode mode = BackupXmlMode.Public, string source = "(domain_backup)")
    {
        var document = XmlDocumentLoader.Load(xml, source);
        return Parse(XmlDocumentLoader.RequireRoot(document, "domainbackup"), mode);
    }

    /// <summary>Parses a <c>&lt;domainbackup&gt;</c> element (standalone, or inside status XML's <c>&lt;backups&gt;</c>).</summary>
    public static BackupDefinition Parse(XElement root, BackupXmlMode mode = BackupXmlMode.Public)
    {
        ArgumentNullException.ThrowIfNull(root);
        if (mode == BackupXmlMode.Public)
        {
            Validate(root);
        }

        var backupMode = BackupMode.Push;
        if (root.Attribute("mode") is { } modeAttribute)
        {
            backupMode = BackupNames.Modes.Parse(modeAttribute.Value)
                ?? throw new DocumentException(DocumentErrorReason.UnknownBackupMode, $"unknown backup mode '{modeAttribute.Value}'");
        }

        var push = backupMode == BackupMode.Push;
        var incremental = NonEmpty(root.Element("incremental")?.Value);
        BackupServer? server = null;
        if (root.Element("server") is { } serverElement)
        {
            if (push)
            {
                throw new DocumentException(DocumentErrorReason.ServerRequiresPull, "use of <server> requires pull mode backup");
            }

            server = ParseServer(serverElement);
        }

        // libvirt reads "./disks/*": every element under <disks>, whatever its name.
        var internalMode = mode == BackupXmlMode.Internal;
        var disks = root.Elements("disks").Elements().Select(d => ParseDisk(d, push, internalMode)).ToList();

        string? tlsSecretAlias = null, tlsAlias = null;
        if (internalMode)
        {
            var objects = root.Elements("privateData").Elements("objects");
            tlsSecretAlias = NonEmpty(objects.Elements("secret").FirstOrDefault(s => s.Attribute("type")?.Value == "tlskey")?.Attribute("alias")?.Value);
            tlsAlias = NonEmpty(objects.Elements("TLSx509").FirstOrDefault()?.Attribute("alias")?.Value);
        }

        return new BackupDefinition(backupMode, incremental, server, disks, tlsSecretAlias, tlsAlias);
    }

    /// <summary>The schema check alone (what <c>virt-xml-validate</c> does).</summary>
    /// <exception cref="DocumentException">With reason <see cref="DocumentErrorReason.SchemaViolation"/>.</exception>
    public static void Validate(XElement root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var report = new SchemaReport(BackupSchema.SchemaName);
        BackupSchema.Check(root, report);
        report.ThrowIfAny();
    }

    // libvirt virDomainStorageNetworkParseHost, then the backup-specific checks.
    private static BackupServer ParseServer(XElement server)
    {
        var transport = ServerTransport.Tcp;
        if (server.Attribute("transport") is { } transportAttribute)
        {
            transport = BackupNames.Transports.Parse(transportAttribute.Value)
                ?? throw new DocumentException(DocumentErrorReason.InvalidServer, $"unknown protocol transport type '{transportAttribute.Value}'");
        }

        var socket = server.Attribute("socket")?.Value;
        var name = server.Attribute("name")?.Value;
        var fdGroup = server.Attribute("fdgroup")?.Value;
        ushort port = 0;
        switch (transport)
        {
            case ServerTransport.Unix when socket is null:
                throw new DocumentException(DocumentErrorReason.InvalidServer, "missing socket for unix transport");
            case not ServerTransport.Unix when socket is not null:
                throw new DocumentException(DocumentErrorReason.InvalidServer, $"transport '{BackupNames.Of(transport)}' does not support socket attribute");
            case ServerTransport.Fd when fdGroup is null:
                throw new DocumentException(DocumentErrorReason.InvalidServer, "Missing required attribute 'fdgroup' in element 'server'");
            case ServerTransport.Tcp or ServerTransport.Rdma:
                if (name is null)
                {
                    throw new DocumentException(DocumentErrorReason.InvalidServer, "missing name for host");
                }

                if (server.Attribute("port") is { } portAttribute)
                {
                    port = ParsePort(portAttribute.Value);
                }

                break;
        }

        if (transport == ServerTransport.Rdma)
        {
            throw new DocumentException(DocumentErrorReason.RdmaTransport, "transport rdma is not supported for <server>");
        }

        if (transport == ServerTransport.Unix && !socket!.StartsWith('/'))
        {
            throw new DocumentException(DocumentErrorReason.RelativeSocketPath, $"backup socket path '{socket}' must be absolute");
        }

        var tls = ParseYesNo(server, "tls");
        return transport switch
        {
            ServerTransport.Unix => new BackupServer(transport, Socket: socket, Tls: tls),
            ServerTransport.Fd => new BackupServer(transport, FdGroup: fdGroup, Tls: tls),
            _ => new BackupServer(transport, Name: name, Port: port, Tls: tls),
        };
    }

    // libvirt virStringParsePort: a TCP port, 0 meaning "not given".
    private static ushort ParsePort(string text)
    {
        if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value))
        {
            throw new DocumentException(DocumentErrorReason.InvalidPort, $"failed to parse port number '{text}'");
        }

        if (value > ushort.MaxValue)
        {
            throw new DocumentException(DocumentErrorReason.InvalidPort, $"port '{text}' out of range");
        }

        return (ushort)value;
    }

    private static BackupDisk ParseDisk(XElement disk, bool push, bool internalMode)
    {
        var name = disk.Attribute("name")?.Value
            ?? throw new DocumentException(DocumentErrorReason.BackupDiskWithoutName, "missing name from disk backup element");

        // Nothing else of a disk that is not backed up is read.
        if (ParseYesNo(disk, "backup") == false)
        {
            return BackupDisk.Excluded(name);
        }

        var exportName = push ? null : disk.Attribute("exportname")?.Value;
        var exportBitmap = push ? null : disk.Attribute("exportbitmap")?.Value;
        var mode = BackupDiskMode.Default;
        if (disk.Attribute("backupmode") is { } modeAttribute)
        {
            mode = BackupNames.DiskModes.Parse(modeAttribute.Value) ?? throw InvalidValue(modeAttribute);
        }

        var incremental = disk.Attribute("incremental")?.Value;
        var state = BackupDiskState.None;
        if (internalMode)
        {
            var stateAttribute = disk.Attribute("state")
                ?? throw new DocumentException(DocumentErrorReason.InvalidAttribute, "Missing required attribute 'state' in element 'disk'");
            state = BackupNames.States.Parse(stateAttribute.Value) ?? throw InvalidValue(stateAttribute);
        }

        var store = ParseStore(disk, push, internalMode);
        return new BackupDisk(name, true, state, mode, incremental, exportName, exportBitmap, store);
    }

    // libvirt virDomainStorageSourceParseBase plus virDomainStorageSourceParse for the
    // <target> (push) or <scratch> (pull) element.
    private static BackupStore ParseStore(XElement disk, bool push, bool internalMode)
    {
        var type = StoreType.File;
        if (disk.Attribute("type") is { } typeAttribute)
        {
            type = BackupNames.StoreTypes.Parse(typeAttribute.Value)
                ?? throw new DocumentException(
                    DocumentErrorReason.UnsupportedStoreType,
                    Array.IndexOf(OtherStorageTypes, typeAttribute.Value) >= 0
                        ? $"unsupported disk backup type '{typeAttribute.Value}'"
                        : $"unknown storage source type '{typeAttribute.Value}'");
        }

        StorageFormat? format = null;
        var formatText = disk.Elements("driver").FirstOrDefault()?.Attribute("type")?.Value;
        if (!string.IsNullOrEmpty(formatText))
        {
            format = StorageFormatNames.Table.Parse(formatText)
                ?? throw new DocumentException(DocumentErrorReason.UnknownStoreFormat, $"unknown storage source format '{formatText}'");
        }

        uint index = 0;
        if (internalMode && disk.Attribute("index") is { } indexAttribute
            && !uint.TryParse(indexAttribute.Value, NumberStyles.None, CultureInfo.InvariantCulture, out index))
        {
            throw InvalidValue(indexAttribute);
        }

        var source = disk.Elements(push ? "target" : "scratch").FirstOrDefault();
        if (source is null)
        {
            return new BackupStore(type, format, null, index, [], null);
        }

        var path = source.Attribute(type == StoreType.Block ? "dev" : "file")?.Value;
        var labels = source.Elements("seclabel").Select(ParseSecurityLabel).ToList();
        var encryption = source.Elements("encryption").FirstOrDefault() is { } e ? ParseEncryption(e) : null;
        string? storageNode = null, formatNode = null;
        if (internalMode)
        {
            var nodeNames = source.Elements("privateData").Elements("nodenames").Elements("nodename").ToList();
            storageNode = NonEmpty(nodeNames.FirstOrDefault(n => n.Attribute("type")?.Value == "storage")?.Attribute("name")?.Value);
            formatNode = NonEmpty(nodeNames.FirstOrDefault(n => n.Attribute("type")?.Value == "format")?.Attribute("name")?.Value);
        }

        return new BackupStore(type, format, path, index, labels, encryption, storageNode, formatNode);
    }

    private static SecurityLabel ParseSecurityLabel(XElement label)
    {
        var relabel = ParseYesNo(label, "relabel") ?? true;
        var labelSkip = ParseYesNo(label, "labelskip") ?? false;
        var text = NonEmpty(label.Elements("label").FirstOrDefault()?.Value);
        if (!relabel && text is not null)
        {
            throw new DocumentException(DocumentErrorReason.InvalidAttribute, "Cannot specify a label if relabelling is turned off.");
        }

        return new SecurityLabel(label.Attribute("model")?.Value, relabel, labelSkip, text);
    }

    private static StoreEncryption ParseEncryption(XElement encryption)
    {
        var format = encryption.Attribute("format")
            ?? throw new DocumentException(DocumentErrorReason.InvalidAttribute, "Missing required attribute 'format' in element 'encryption'");
        if (format.Value != "luks")
        {
            throw InvalidValue(format);
        }

        var engine = encryption.Attribute("engine");
        if (engine is not null && engine.Value != "qemu")
        {
            throw InvalidValue(engine);
        }

        var secret = encryption.Element("secret")
            ?? throw new DocumentException(DocumentErrorReason.InvalidAttribute, "missing element 'secret' in element 'encryption'");
        if (secret.Attribute("type") is { } secretType && secretType.Value != "passphrase")
        {
            throw InvalidValue(secretType);
        }

        var uuid = secret.Attribute("uuid");
        var usage = secret.Attribute("usage")?.Value;
        string? canonicalUuid = null;
        if (uuid is not null)
        {
            canonicalUuid = CanonicalUuid(uuid.Value) ?? throw InvalidValue(uuid);
        }
        else if (usage is null)
        {
            throw new DocumentException(DocumentErrorReason.InvalidAttribute, "missing secret uuid or usage attribute");
        }

        EncryptionCipher? cipher = null;
        if (encryption.Element("cipher") is { } c)
        {
            var size = c.Attribute("size")?.Value;
            if (c.Attribute("name") is null || !uint.TryParse(size, NumberStyles.None, CultureInfo.InvariantCulture, out var bits))
            {
                throw new DocumentException(DocumentErrorReason.InvalidAttribute, "cipher element missing or invalid name or size");
            }

            cipher = new EncryptionCipher(c.Attribute("name")!.Value, bits, c.Attribute("mode")?.Value, c.Attribute("hash")?.Value);
        }

        EncryptionIvGenerator? ivgen = null;
        if (encryption.Element("ivgen") is { } i)
        {
            ivgen = new EncryptionIvGenerator(
                i.Attribute("name")?.Value ?? throw new DocumentException(DocumentErrorReason.InvalidAttribute, "missing ivgen name"),
                i.Attribute("hash")?.Value);
        }

        return new StoreEncryption(engine?.Value, canonicalUuid, canonicalUuid is null ? usage : null, cipher, ivgen);
    }

    /// <summary>libvirt stores a UUID as 16 bytes and writes it lower-case, 8-4-4-4-12.</summary>
    private static string? CanonicalUuid(string text)
    {
        var hex = text.Replace("-", string.Empty, StringComparison.Ordinal);
        return hex.Length == 32 && Guid.TryParseExact(hex, "N", out var guid) ? guid.ToString("D") : null;
    }

    private static bool? ParseYesNo(XElement element, string attribute)
    {
        var value = element.Attribute(attribute);
        return value?.Value switch
        {
            null => null,
            "yes" => true,
            "no" => false,
            _ => throw InvalidValue(value),
        };
    }

    // libvirt virXMLPropEnum's message for a value outside the enum.
    private static DocumentException InvalidValue(XAttribute attribute)
        => new(
            DocumentErrorReason.InvalidAttribute,
            $"Invalid value for attribute '{attribute.Name.LocalName}' in element '{attribute.Parent!.Name.LocalName}': '{attribute.Value}'.");

    // libvirt's virXPathString returns NULL for an empty string.
    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;
}
