namespace Tidemark.Backup;

/// <summary>Why a backup, restore or verify was refused or failed.</summary>
public enum BackupErrorReason
{
    /// <summary>Another process holds the repository's lock.</summary>
    RepositoryLocked,

    /// <summary>The repository's files break its layout (a manifest that cannot be read, a chain file missing).</summary>
    RepositoryDamaged,

    /// <summary>No such domain, disk or checkpoint in the repository.</summary>
    NotFound,

    /// <summary>The request cannot be carried out as asked (an incremental without a usable chain, no disk to back up).</summary>
    InvalidRequest,

    /// <summary>The output exists and overwriting was not asked for.</summary>
    OutputExists,

    /// <summary>The host refused or lost the backup job.</summary>
    HostFailed,

    /// <summary>A domain's directory holds another domain's backups (another name, or another uuid under the same name).</summary>
    OtherDomain,
}

/// <summary>A backup repository operation failed; the message names the file, disk or checkpoint.</summary>
public sealed class BackupException : Exception
{
    public BackupException(BackupErrorReason reason, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Reason = reason;
    }

    public BackupException()
        : this(BackupErrorReason.InvalidRequest, "backup failed")
    {
    }

    public BackupException(string message)
        : this(BackupErrorReason.InvalidRequest, message)
    {
    }

    public BackupException(string message, Exception innerException)
        : this(BackupErrorReason.InvalidRequest, message, innerException)
    {
    }

    public BackupErrorReason Reason { get; }
}
