namespace Tidemark.Formats.Backups;

/// <summary>
/// Where a disk's backup goes: the push <c>&lt;target&gt;</c> or the pull <c>&lt;scratch&gt;</c>.
/// </summary>
/// <param name="Type">file or block.</param>
/// <param name="Format">&lt;driver type=&gt;, or null when not given (the engine then uses qcow2, spec §3.4).</param>
/// <param name="Path">The file or device; null when alignment has to generate it.</param>
/// <param name="Index">Status XML only: the store's node index (<c>index=</c>), 0 when unset.</param>
/// <param name="SecurityLabels">&lt;seclabel&gt; children, in order.</param>
/// <param name="Encryption">&lt;encryption&gt;, if any.</param>
/// <param name="StorageNodeName">Status XML only: the store's storage node name (&lt;privateData&gt;&lt;nodenames&gt;).</param>
/// <param name="FormatNodeName">Status XML only: the store's format node name.</param>
public sealed record BackupStore(
    StoreType Type,
    StorageFormat? Format,
    string? Path,
    uint Index,
    IReadOnlyList<SecurityLabel> SecurityLabels,
    StoreEncryption? Encryption,
    string? StorageNodeName = null,
    string? FormatNodeName = null)
{
    /// <summary>A store of <paramref name="type"/> at <paramref name="path"/> with nothing else set.</summary>
    public static BackupStore At(StoreType type, string? path, StorageFormat? format = null)
        => new(type, format, path, 0, [], null);
}

/// <summary>The store type of a backup disk (<c>type=</c>; file when absent).</summary>
public enum StoreType
{
    File,
    Block,
}

/// <summary>A per-device security label (<c>&lt;seclabel&gt;</c> under a target or scratch).</summary>
/// <param name="Model">model=, e.g. dac or selinux; null when not given.</param>
/// <param name="Relabel">relabel=; true when absent.</param>
/// <param name="LabelSkip">labelskip='yes'.</param>
/// <param name="Label">The &lt;label&gt; text, if any.</param>
public sealed record SecurityLabel(string? Model, bool Relabel, bool LabelSkip, string? Label);

/// <summary>
/// LUKS encryption of a store (<c>&lt;encryption format='luks'&gt;</c>, spec §3.1).
/// </summary>
/// <param name="Engine">engine=, e.g. qemu; null when not given.</param>
/// <param name="SecretUuid">&lt;secret uuid=&gt;, in canonical lower-case 8-4-4-4-12 form.</param>
/// <param name="SecretUsage">&lt;secret usage=&gt;.</param>
/// <param name="Cipher">&lt;cipher&gt;, if given.</param>
/// <param name="IvGenerator">&lt;ivgen&gt;, if given.</param>
public sealed record StoreEncryption(
    string? Engine,
    string? SecretUuid,
    string? SecretUsage,
    EncryptionCipher? Cipher,
    EncryptionIvGenerator? IvGenerator);

/// <summary>&lt;cipher name= size= [mode= hash=]/&gt;.</summary>
public sealed record EncryptionCipher(string Name, uint Size, string? Mode, string? Hash);

/// <summary>&lt;ivgen name= [hash=]/&gt;.</summary>
public sealed record EncryptionIvGenerator(string Name, string? Hash);
