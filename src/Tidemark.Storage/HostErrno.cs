using System.Runtime.InteropServices;

namespace Tidemark.Storage;

/// <summary>
/// The errno behind a .NET file-system exception, for messages worded as libvirt's
/// <c>virReportSystemError</c> words them: "what: strerror". .NET keeps the raw errno as the
/// HResult of the plain <see cref="IOException"/>s it makes from one, and maps a few errnos to
/// exception types of their own.
/// </summary>
public static class HostErrno
{
    // <errno.h> on Linux.
    private const int NoEntry = 2;
    private const int AccessDenied = 13;
    private const int NameTooLong = 36;
    private const int NoSpaceLeft = 28;
    private const int QuotaExceeded = 122;

    /// <summary>The errno <paramref name="error"/> stands for, if it stands for one.</summary>
    public static int? Of(Exception error) => error switch
    {
        DirectoryNotFoundException or FileNotFoundException => NoEntry,
        PathTooLongException => NameTooLong,
        UnauthorizedAccessException => AccessDenied,
        IOException { HResult: > 0 and < 4096 } io => io.HResult,
        _ => null,
    };

    /// <summary>Whether <paramref name="error"/> says the host is out of space: ENOSPC, or EDQUOT, which QEMU's file driver counts the same.</summary>
    public static bool IsNoSpace(Exception error) => Of(error) is NoSpaceLeft or QuotaExceeded;

    /// <summary>strerror of <paramref name="error"/>'s errno ("No such file or directory"), else its message.</summary>
    public static string Describe(Exception error)
        => Of(error) is { } errno ? Marshal.GetPInvokeErrorMessage(errno) : error.Message;
}
