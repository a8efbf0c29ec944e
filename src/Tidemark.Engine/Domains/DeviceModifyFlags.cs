namespace Tidemark.Engine.Domains;

/// <summary>virDomainDeviceModifyFlags: which definition a device change applies to.</summary>
[Flags]
public enum DeviceModifyFlags
{
    /// <summary>VIR_DOMAIN_AFFECT_CURRENT: the running domain if it runs, else its persistent definition.</summary>
    Current = 0,

    /// <summary>VIR_DOMAIN_AFFECT_LIVE: the running domain.</summary>
    Live = 1,

    /// <summary>VIR_DOMAIN_AFFECT_CONFIG: the persistent definition, which the domain takes at its next start.</summary>
    Config = 2,

    /// <summary>VIR_DOMAIN_DEVICE_MODIFY_FORCE: an update may open a tray the guest has locked (update only).</summary>
    Force = 4,
}
