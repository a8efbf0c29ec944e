using Tidemark.Remote;

namespace Tidemark.Daemon;

/// <summary>
/// The name a client opens (CONNECT_OPEN; libvirt's client sends its URI without the
/// transport, the server and its own parameters, e.g. <c>qemu:///system</c>), checked as
/// libvirtd running as root checks it: only the QEMU driver is here, and it takes the paths
/// <c>/system</c> and, for compatibility, <c>/session</c> (libvirt's driver.c,
/// virConnectValidateURIPath). No name means the default, which is this driver.
/// </summary>
internal static class ConnectionName
{
    /// <exception cref="LibvirtError">"no connection driver available for NAME" (libvirt.c, when every driver declines); "internal error: unexpected qemu URI path '/P', try qemu:///system".</exception>
    public static void Check(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return;
        }

        if (!Uri.TryCreate(name, UriKind.Absolute, out var uri) || uri.Scheme != "qemu")
        {
            throw new LibvirtError(VirErrorNumber.NoConnect, VirErrorDomain.None, $"no connection driver available for {name}");
        }

        if (uri.AbsolutePath is not ("/system" or "/session"))
        {
            throw LibvirtError.Create(VirErrorNumber.InternalError, VirErrorDomain.None, $"unexpected qemu URI path '{uri.AbsolutePath}', try qemu:///system");
        }
    }
}
