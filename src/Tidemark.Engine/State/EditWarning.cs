namespace Tidemark.Engine.State;

/// <summary>
/// The comment libvirt puts at the top of the configuration files it writes, telling a reader
/// which virsh command edits the file instead (<c>virXMLEmitWarning</c>, src/util/virxml.c).
/// </summary>
/// <remarks>
/// libvirt writes it byte for byte as below: "virsh ", the command, then " " and a name only
/// when one is given, then a blank line before the document. Readers skip it as any XML comment.
/// </remarks>
internal static class EditWarning
{
    private const string Prologue =
        "<!--\n" +
        "WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n" +
        "OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n" +
        "  virsh ";

    private const string Epilogue =
        "\n" +
        "or other application using the libvirt API.\n" +
        "-->\n\n";

    // virXMLPickShellSafeComment: a name that a shell would not split or expand, and that
    // cannot end the comment early.
    private static readonly System.Buffers.SearchValues<char> ShellUnsafe = System.Buffers.SearchValues.Create("\r\t\n !\"#$&'()*;<>?[\\]^`{|}~");

    /// <summary>
    /// The comment above checkpoint metadata: command "checkpoint-edit" and no name, as
    /// <c>qemuCheckpointWriteMetadata</c> calls <c>virXMLSaveFile(chkFile, NULL,
    /// "checkpoint-edit", newxml)</c> (src/qemu/qemu_checkpoint.c).
    /// </summary>
    public const string Checkpoint = Prologue + "checkpoint-edit" + Epilogue;

    /// <summary>
    /// The comment above a persistent domain's definition: command "edit" and the domain's
    /// name, or its UUID when the name is not shell-safe, or nothing when neither is
    /// (<c>virDomainDefSaveXML</c>, src/conf/domain_conf.c).
    /// </summary>
    public static string Domain(string name, Guid uuid)
    {
        var uuidText = uuid.ToString("D");
        var safe = IsShellSafe(name) ? name : IsShellSafe(uuidText) ? uuidText : null;
        return Prologue + "edit" + (safe is null ? string.Empty : " " + safe) + Epilogue;
    }

    private static bool IsShellSafe(string text)
        => !text.AsSpan().ContainsAny(ShellUnsafe) && !text.Contains("--", StringComparison.Ordinal);
}
