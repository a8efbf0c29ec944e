using Tidemark.Remote.Protocol;

namespace Tidemark.Remote;

/// <summary>
/// An error as libvirt reports it: code, domain and the full message a client prints after
/// "error: " (prefix included, e.g. "Domain not found: no domain with matching name 'vm1'").
/// A backend throws it and the server sends it as <c>remote_error</c>; the client raises it
/// from a <c>remote_error</c> reply, so callers branch on <see cref="Code"/> as libvirt's do.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1710", Justification = "libvirt's own word for what clients catch (libvirt-python's libvirtError).")]
public sealed class LibvirtError : Exception
{
    public LibvirtError(VirErrorNumber code, VirErrorDomain domain, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Code = code;
        Domain = domain;
    }

    public LibvirtError()
        : this(VirErrorNumber.InternalError, VirErrorDomain.None, "internal error: unexpected failure")
    {
    }

    public LibvirtError(string message)
        : this(VirErrorNumber.InternalError, VirErrorDomain.None, message)
    {
    }

    public LibvirtError(string message, Exception innerException)
        : this(VirErrorNumber.InternalError, VirErrorDomain.None, message, innerException)
    {
    }

    /// <summary>virErrorNumber.</summary>
    public VirErrorNumber Code { get; }

    /// <summary>virErrorDomain.</summary>
    public VirErrorDomain Domain { get; }

    /// <summary>The domain the error concerns, when the server named one.</summary>
    public RemoteDomain? ErrorDomainObject { get; init; }

    /// <summary>An error whose message is <paramref name="code"/>'s libvirt prefix, ": ", and <paramref name="detail"/>.</summary>
    public static LibvirtError Create(VirErrorNumber code, VirErrorDomain domain, string detail)
    {
        var prefix = VirErrorText.PrefixOf(code);
        return new LibvirtError(code, domain, prefix is null ? detail : $"{prefix}: {detail}");
    }

    /// <summary>NO_SUPPORT for an API, worded as libvirt's drivers word it.</summary>
    public static LibvirtError NoSupport(string apiName) =>
        Create(VirErrorNumber.NoSupport, DomainOfApi(apiName), apiName);

    /// <summary>"Domain not found: no domain with matching name 'X'" (code 42).</summary>
    public static LibvirtError NoDomainWithName(string name) =>
        Create(VirErrorNumber.NoDomain, VirErrorDomain.Qemu, $"no domain with matching name '{name}'");

    /// <summary>"Domain not found: no domain with matching uuid 'U' (name)" (code 42).</summary>
    public static LibvirtError NoDomainWithUuid(Guid uuid, string? name = null) =>
        Create(VirErrorNumber.NoDomain, VirErrorDomain.Qemu, name is null ? $"no domain with matching uuid '{uuid:D}'" : $"no domain with matching uuid '{uuid:D}' ({name})");

    /// <summary>"Domain not found: no domain with matching id N" (code 42).</summary>
    public static LibvirtError NoDomainWithId(int id) =>
        Create(VirErrorNumber.NoDomain, VirErrorDomain.Qemu, $"no domain with matching id {id}");

    /// <summary>"Domain checkpoint not found: no domain checkpoint with matching name 'X'" (code 103, domain QEMU as libvirt's QEMU driver reports it).</summary>
    public static LibvirtError NoCheckpointWithName(string name) =>
        Create(VirErrorNumber.NoDomainCheckpoint, VirErrorDomain.Qemu, $"no domain checkpoint with matching name '{name}'");

    private static VirErrorDomain DomainOfApi(string apiName) =>
        apiName.StartsWith("virDomainCheckpoint", StringComparison.Ordinal) ? VirErrorDomain.DomainCheckpoint
        : apiName.StartsWith("virDomain", StringComparison.Ordinal) ? VirErrorDomain.Domain
        : apiName.StartsWith("virStorage", StringComparison.Ordinal) ? VirErrorDomain.Storage
        : VirErrorDomain.None;
}
