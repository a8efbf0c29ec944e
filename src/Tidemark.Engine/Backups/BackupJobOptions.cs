using Microsoft.Extensions.Logging;
using Tidemark.Storage;

namespace Tidemark.Engine.Backups;

/// <summary>The settings of one backup job that are not in the backup document.</summary>
public sealed class BackupJobOptions
{
    /// <summary>Who fails when a copy aside fails (libvirt: the job).</summary>
    public OnCopyBeforeWriteError OnCopyBeforeWriteError { get; init; } = OnCopyBeforeWriteError.FailJob;

    /// <summary>
    /// <c>VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL</c>: stores exist already and are opened as
    /// they are, never created, formatted or removed (spec §6.7 step 11).
    /// </summary>
    public bool ReuseExternal { get; init; }

    /// <summary>
    /// <c>backup_tls_x509_cert_dir</c>: where a TLS pull server finds <c>ca-cert.pem</c>,
    /// <c>server-cert.pem</c> and <c>server-key.pem</c>. Null refuses <c>tls='yes'</c>.
    /// </summary>
    public string? TlsDirectory { get; init; }

    /// <summary>
    /// The pull server's socket for <c>transport='fd'</c>: a socket of the caller's, bound (and
    /// perhaps listening), which the job's server listens on and closes when it stops. Null
    /// refuses that transport.
    /// </summary>
    public System.Net.Sockets.Socket? ServerSocket { get; init; }

    /// <summary><c>backup_tls_x509_verify</c>: TLS clients must present a certificate signed by the CA.</summary>
    public bool TlsVerifyPeer { get; init; } = true;

    /// <summary>
    /// Called with each file's path before the job creates it (targets, scratch files), so
    /// that a crash leaves a record of exactly what to remove (design.md, "Crash"). Should the
    /// call throw, the file is not created and the job does not begin.
    /// </summary>
    public Func<string, CancellationToken, ValueTask>? OnCreatingFile { get; init; }

    /// <summary>The clock for elapsed times.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Logs of the pull NBD server and the job.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>
    /// Wraps each store after it is opened. A seam for fault injection in tests (a scratch
    /// that fails its writes); production leaves it null.
    /// </summary>
    internal Func<IBlockImage, IBlockImage>? StoreWrapper { get; init; }
}
