using System.Runtime.InteropServices;

namespace Tidemark.Storage;

/// <summary>
/// The user and group this process acts as on files (its effective ids): what libvirt names
/// when an image cannot be reached, "Cannot access storage file '%s' (as uid:%u, gid:%u)",
/// since a permission problem depends on who asks.
/// </summary>
public static partial class ProcessIdentity
{
    public static uint UserId => geteuid();

    public static uint GroupId => getegid();

    [LibraryImport("libc")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static partial uint geteuid();

    [LibraryImport("libc")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static partial uint getegid();
}
