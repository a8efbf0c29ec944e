using System.Globalization;
using Tidemark.Formats.Xml;

namespace Tidemark.Formats.Backups;

/// <summary>
/// Writes a <c>&lt;domainbackup&gt;</c> byte for byte as libvirt's <c>virDomainBackupDefFormat</c>
/// does (spec §3.5), in the public or the internal (status XML) form.
/// </summary>
public static class BackupFormatter
{
    /// <summary>Formats <paramref name="backup"/> as a document of its own.</summary>
    public static string Format(BackupDefinition backup, BackupXmlMode mode = BackupXmlMode.Public)
        => Format(backup, mode, indent: 0);

    /// <summary>Formats <paramref name="backup"/> starting at <paramref name="indent"/> spaces (inside status XML's <c>&lt;backups&gt;</c>).</summary>
    public static string Format(BackupDefinition backup, BackupXmlMode mode, int indent)
    {
        ArgumentNullException.ThrowIfNull(backup);
        ArgumentOutOfRangeException.ThrowIfNegative(indent);
        var internalMode = mode == BackupXmlMode.Internal;
        var w = new LibvirtXmlWriter(indent);
        w.Open("domainbackup", ("mode", BackupNames.Of(backup.Mode)));
        w.TextElement("incremental", backup.Incremental);
        if (backup.Server is { } server)
        {
            w.Empty(
                "server",
                ("transport", BackupNames.Of(server.Transport)),
                ("tls", server.Tls is { } tls ? (tls ? "yes" : "no") : null),
                ("name", server.Name),
                ("port", server.Port != 0 ? server.Port.ToString(CultureInfo.InvariantCulture) : null),
                ("socket", server.Socket),
                ("fdgroup", server.FdGroup));
        }

        if (backup.Disks.Count > 0)
        {
            w.Open("disks");
            foreach (var disk in backup.Disks)
            {
                FormatDisk(w, disk, backup.Mode == BackupMode.Push ? "target" : "scratch", internalMode);
            }

            w.Close("disks");
        }

        if (internalMode && (backup.TlsSecretAlias is not null || backup.TlsAlias is not null))
        {
            w.Open("privateData");
            w.Open("objects");
            if (backup.TlsSecretAlias is not null)
            {
                w.Empty("secret", ("type", "tlskey"), ("alias", backup.TlsSecretAlias));
            }

            if (backup.TlsAlias is not null)
            {
                w.Empty("TLSx509", ("alias", backup.TlsAlias));
            }

            w.Close("objects");
            w.Close("privateData");
        }

        w.Close("domainbackup");
        return w.ToString();
    }

    private static void FormatDisk(LibvirtXmlWriter w, BackupDisk disk, string storeElement, bool internalMode)
    {
        var state = internalMode && disk.State != BackupDiskState.None ? BackupNames.Of(disk.State) : null;
        var store = disk.Store;
        if (!disk.Backup || store is null)
        {
            w.Empty("disk", ("name", disk.Name), ("backup", disk.Backup ? "yes" : "no"), ("state", state));
            return;
        }

        (string, string?)[] attributes =
        [
            ("name", disk.Name),
            ("backup", "yes"),
            ("state", state),
            ("type", BackupNames.Of(store.Type)),
            ("backupmode", disk.Mode != BackupDiskMode.Default ? BackupNames.Of(disk.Mode) : null),
            ("incremental", disk.Incremental),
            ("exportname", disk.ExportName),
            ("exportbitmap", disk.ExportBitmap),
            ("index", store.Index != 0 ? store.Index.ToString(CultureInfo.InvariantCulture) : null),
        ];
        var hasPrivate = internalMode && (store.StorageNodeName is not null || store.FormatNodeName is not null);
        var hasStoreChildren = store.SecurityLabels.Count > 0 || store.Encryption is not null || hasPrivate;
        if (store.Format is null && store.Path is null && !hasStoreChildren)
        {
            w.Empty("disk", attributes);
            return;
        }

        w.Open("disk", attributes);
        if (store.Format is { } format)
        {
            w.Empty("driver", ("type", StorageFormatNames.Of(format)));
        }

        // libvirt leaves out a source element with neither attributes nor children.
        var pathAttribute = store.Type == StoreType.Block ? "dev" : "file";
        if (!hasStoreChildren)
        {
            if (store.Path is not null)
            {
                w.Empty(storeElement, (pathAttribute, store.Path));
            }
        }
        else
        {
            w.Open(storeElement, (pathAttribute, store.Path));
            foreach (var label in store.SecurityLabels)
            {
                FormatSecurityLabel(w, label);
            }

            if (store.Encryption is { } encryption)
            {
                FormatEncryption(w, encryption);
            }

            if (hasPrivate)
            {
                FormatNodeNames(w, store);
            }

            w.Close(storeElement);
        }

        w.Close("disk");
    }

    private static void FormatSecurityLabel(LibvirtXmlWriter w, SecurityLabel label)
    {
        (string, string?)[] attributes =
        [
            ("model", label.Model),
            (label.LabelSkip ? "labelskip" : "relabel", label.LabelSkip ? "yes" : label.Relabel ? "yes" : "no"),
        ];
        if (label.Label is null)
        {
            w.Empty("seclabel", attributes);
            return;
        }

        w.Open("seclabel", attributes);
        w.TextElement("label", label.Label);
        w.Close("seclabel");
    }

    private static void FormatEncryption(LibvirtXmlWriter w, StoreEncryption encryption)
    {
        w.Open("encryption", ("format", "luks"), ("engine", encryption.Engine));
        w.Empty("secret", ("type", "passphrase"), ("uuid", encryption.SecretUuid), ("usage", encryption.SecretUsage));
        if (encryption.Cipher is { } cipher)
        {
            w.Empty(
                "cipher",
                ("name", cipher.Name),
                ("size", cipher.Size.ToString(CultureInfo.InvariantCulture)),
                ("mode", cipher.Mode),
                ("hash", cipher.Hash));
        }

        if (encryption.IvGenerator is { } ivgen)
        {
            w.Empty("ivgen", ("name", ivgen.Name), ("hash", ivgen.Hash));
        }

        w.Close("encryption");
    }

    /// <summary>The store's QEMU node names, as the status XML keeps them (spec §3.6).</summary>
    internal static void FormatNodeNames(LibvirtXmlWriter w, BackupStore store)
    {
        w.Open("privateData");
        w.Open("nodenames");
        if (store.StorageNodeName is not null)
        {
            w.Empty("nodename", ("type", "storage"), ("name", store.StorageNodeName));
        }

        if (store.FormatNodeName is not null)
        {
            w.Empty("nodename", ("type", "format"), ("name", store.FormatNodeName));
        }

        w.Close("nodenames");
        w.Close("privateData");
    }
}
