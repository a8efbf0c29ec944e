namespace Tidemark.Engine.State;

/// <summary>
/// The comment libvirt puts at the top of the configuration files it writes, telling a reader
/// which virsh command edits the file instead (<c>virXMLEmitWarning</c>, src/util/virxml.c).
/// </summary>
/// <remarks>
/// libvirt writes it byte for byte as below: "virsh ", the command, then " " and a name only
/// when one is given (checkpoint metadata passes none: <c>qemuCheckpointWriteMetadata</c> calls
/// <c>virXMLSaveFile(chkFile, NULL, "checkpoint-edit", newxml)</c>, src/qemu/qemu_checkpoint.c),
/// then a blank line before the document. Readers skip it as any XML comment.
/// </remarks>
internal static class EditWarning
{
    /// <summary>The comment above checkpoint metadata: command "checkpoint-edit", no name.</summary>
    public const string Checkpoint =
        "<!--\n" +
        "WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n" +
        "OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n" +
        "  virsh checkpoint-edit\n" +
        "or other application using the libvirt API.\n" +
        "-->\n\n";
}
