using System.Xml.Linq;

namespace Tidemark.Formats.Tests;

/// <summary>One edit of a document's tree or text, for the property tests.</summary>
public enum MutationKind
{
    DropElement,
    DuplicateElement,
    RenameElement,
    DropAttribute,
    RenameAttribute,
    ChangeAttribute,
    CopyAttribute,
    ChangeText,
    Truncate,
}

/// <summary>One edit: <see cref="Target"/> picks the node, <see cref="Pick"/> the new name or value.</summary>
public sealed record Mutation(MutationKind Kind, int Target, int Pick);

/// <summary>A conformance input with a list of edits applied in order.</summary>
public sealed record DocumentMutant(string File, IReadOnlyList<Mutation> Mutations)
{
    // The vocabulary of the schemas, so that renames often land on names that mean something.
    private static readonly string[] ElementNames =
    [
        "name", "description", "creationTime", "parent", "disks", "disk", "domain", "active", "incremental", "server",
        "target", "scratch", "driver", "seclabel", "label", "encryption", "secret", "cipher", "ivgen", "privateData",
        "objects", "nodenames", "nodename", "devices", "source", "readonly", "uuid", "backingStore", "x",
    ];

    private static readonly string[] AttributeNames =
    [
        "name", "checkpoint", "bitmap", "size", "mode", "transport", "tls", "port", "socket", "fdgroup", "backup",
        "type", "backupmode", "incremental", "exportname", "exportbitmap", "index", "state", "file", "dev", "model",
        "relabel", "labelskip", "format", "engine", "uuid", "usage", "hash", "device", "bus", "alias", "id",
    ];

    private static readonly string[] Values =
    [
        string.Empty, " ", "vda", "vdb", "sdz9", "/abs/path", "relative", "no", "yes", "bitmap", "pull", "push", "tcp",
        "unix", "fd", "rdma", "0", "70000", "65535", "4294967296", "-1", "18446744073709551616", "qcow2", "raw", "luks",
        "file", "block", "network", "full", "incremental", "running", "..", "a b", "&<>'\"", "c1", "localhost", "::1",
        "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f", "0A81F5B284037B23C8D621CCC2F80D6F", "passphrase", "dac", "qemu",
        " no ", " file ", " pull ", "block\n", " yes", "vda ", " 12", "cdrom", "ide", "disk",
    ];

    /// <summary>The edited document text.</summary>
    public string Apply(string original)
    {
        var document = XDocument.Parse(original, LoadOptions.PreserveWhitespace);
        var truncateAt = -1;
        foreach (var m in Mutations)
        {
            var elements = document.Root!.DescendantsAndSelf().ToList();
            var attributes = elements.SelectMany(e => e.Attributes()).ToList();
            var element = elements[m.Target % elements.Count];
            switch (m.Kind)
            {
                case MutationKind.DropElement when element != document.Root:
                    element.Remove();
                    break;
                case MutationKind.DuplicateElement when element != document.Root:
                    element.AddAfterSelf(new XElement(element));
                    break;
                case MutationKind.RenameElement:
                    element.Name = ElementNames[m.Pick % ElementNames.Length];
                    break;
                case MutationKind.DropAttribute when attributes.Count > 0:
                    attributes[m.Target % attributes.Count].Remove();
                    break;
                case MutationKind.RenameAttribute when attributes.Count > 0:
                    var old = attributes[m.Target % attributes.Count];
                    var newName = AttributeNames[m.Pick % AttributeNames.Length];
                    if (old.Parent!.Attribute(newName) is null)
                    {
                        old.Parent.SetAttributeValue(newName, old.Value);
                        old.Remove();
                    }

                    break;
                case MutationKind.ChangeAttribute when attributes.Count > 0:
                    attributes[m.Target % attributes.Count].Value = Values[m.Pick % Values.Length];
                    break;
                case MutationKind.CopyAttribute when attributes.Count > 0:
                    var source = attributes[m.Pick % attributes.Count];
                    element.SetAttributeValue(source.Name, source.Value);
                    break;
                case MutationKind.ChangeText when !element.HasElements:
                    element.Value = Values[m.Pick % Values.Length];
                    break;
                case MutationKind.Truncate:
                    truncateAt = m.Pick;
                    break;
            }
        }

        var text = document.ToString(SaveOptions.DisableFormatting);
        return truncateAt < 0 ? text : text[..(truncateAt % Math.Max(text.Length, 1))];
    }

    public override string ToString() => $"{File}: {string.Join(", ", Mutations)}";
}
