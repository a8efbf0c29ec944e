namespace Tidemark.Formats.Backups;

/// <summary>
/// A <c>&lt;domainbackup&gt;</c> document (spec §3): what to back up, how, and where. Parsed by
/// <see cref="BackupParser"/>, completed against a domain by <see cref="BackupAligner"/>, written
/// by <see cref="BackupFormatter"/>.
/// </summary>
/// <param name="Mode">push or pull.</param>
/// <param name="Incremental">&lt;incremental&gt;: the backup-level base checkpoint, or null for a full backup.</param>
/// <param name="Server">The pull NBD server.</param>
/// <param name="Disks">The disks, in document order (after alignment: listed ones, then the rest of the domain's).</param>
/// <param name="TlsSecretAlias">Status XML only: the TLS key secret object's alias.</param>
/// <param name="TlsAlias">Status XML only: the TLS credentials object's alias.</param>
public sealed record BackupDefinition(
    BackupMode Mode,
    string? Incremental,
    BackupServer? Server,
    IReadOnlyList<BackupDisk> Disks,
    string? TlsSecretAlias = null,
    string? TlsAlias = null);

/// <summary>Which form of <c>&lt;domainbackup&gt;</c> is read or written.</summary>
public enum BackupXmlMode
{
    /// <summary>The public document: schema-validated, no state or private data.</summary>
    Public,

    /// <summary>
    /// The status-XML form kept while a job runs (spec §3.6): no schema validation, plus disk
    /// <c>state=</c> and <c>index=</c>, store node names and the TLS object aliases.
    /// </summary>
    Internal,
}
