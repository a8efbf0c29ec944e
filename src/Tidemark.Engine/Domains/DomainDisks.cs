using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Domains;

/// <summary>What libvirt checks of a domain's disks together (virDomainDefCheckDuplicateDiskInfo).</summary>
internal static class DomainDisks
{
    /// <exception cref="EngineException">"target '%s' duplicated for disk sources '%s' and '%s'", as an XML error.</exception>
    public static void CheckUniqueTargets(DomainDefinition definition)
    {
        var disks = definition.Disks;
        for (var i = 0; i < disks.Count; i++)
        {
            for (var j = i + 1; j < disks.Count; j++)
            {
                if (disks[i].TargetDev == disks[j].TargetDev)
                {
                    throw new EngineException(EngineErrorReason.DuplicateDiskTarget, $"target '{disks[i].TargetDev}' duplicated for disk sources '{disks[i].SourcePath ?? "<null>"}' and '{disks[j].SourcePath ?? "<null>"}'");
                }
            }
        }
    }
}
