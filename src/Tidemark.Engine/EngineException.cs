using Tidemark.Formats;

namespace Tidemark.Engine;

/// <summary>
/// The one error of the engine layer: an operation on a domain, a checkpoint or a running disk
/// that was refused or failed. The message is libvirt's, <c>&lt;code prefix&gt;: &lt;detail&gt;</c>
/// (spec §9), or the detail alone where libvirt reports it bare (<see cref="EngineErrorReasons.IsBare"/>), so a daemon can put <see cref="Code"/> and <see cref="Exception.Message"/> on the
/// wire unchanged.
/// </summary>
/// <remarks>
/// Documents the engine is given (domain, checkpoint XML) that cannot be read or do not fit
/// their domain raise the document layer's <see cref="DocumentException"/> instead, which
/// carries a libvirt code the same way.
/// </remarks>
public sealed class EngineException : Exception
{
    public EngineException(EngineErrorReason reason, string detail, Exception? innerException = null)
        : base(EngineErrorReasons.IsBare(reason) ? detail : LibvirtErrorPrefix.Format(EngineErrorReasons.CodeOf(reason), detail), innerException)
    {
        Reason = reason;
        Detail = detail;
    }

    /// <summary>Why the operation was refused.</summary>
    public EngineErrorReason Reason { get; }

    /// <summary>libvirt's error code for <see cref="Reason"/>.</summary>
    public LibvirtErrorCode Code => EngineErrorReasons.CodeOf(Reason);

    /// <summary>The detail text, without the code prefix.</summary>
    public string Detail { get; }
}
