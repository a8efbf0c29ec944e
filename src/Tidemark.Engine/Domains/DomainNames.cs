namespace Tidemark.Engine.Domains;

/// <summary>
/// The names a domain may take. The schema allows any name without a newline; libvirt then
/// refuses '/' in code ("name %s cannot contain '/'", virDomainDefParseXML). Here a domain's
/// name is also a file name in the state directory (<c>domains/&lt;name&gt;.xml</c>,
/// <c>checkpoint/&lt;name&gt;/</c>), so "." and "..", which would name the directories
/// themselves, are refused too (libvirt fails on them later, while cleaning paths).
/// </summary>
internal static class DomainNames
{
    /// <exception cref="EngineException">An unusable name, as an XML error.</exception>
    public static void Check(string name)
    {
        if (name.Contains('/', StringComparison.Ordinal))
        {
            throw new EngineException(EngineErrorReason.InvalidDomainName, $"name {name} cannot contain '/'");
        }

        if (name is "" or "." or "..")
        {
            throw new EngineException(EngineErrorReason.InvalidDomainName, $"name '{name}' cannot be a domain name: it names a directory");
        }
    }
}
