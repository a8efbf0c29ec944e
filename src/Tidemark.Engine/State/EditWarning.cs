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
    /// <summary>The command libvirt names in checkpoint metadata files.</summary>
    public const string CheckpointEdit = "checkpoint-edit";

    private const string Prologue =
        "<!--\n" +
        "WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n" +
        "OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n" +
        "  virsh ";

    private const string Epilogue =
        "\n" +
        "or other application using the libvirt API.\n" +
        "-->\n\n";

    /// <summary>The comment for <paramref name="command"/>, followed by <paramref name="name"/> when given.</summary>
    public static string For(string command, string? name = null)
        => name is null ? Prologue + command + Epilogue : Prologue + command + " " + name + Epilogue;
}
