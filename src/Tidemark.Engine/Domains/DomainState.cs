namespace Tidemark.Engine.Domains;

/// <summary>A domain's state, numbered as libvirt's <c>virDomainState</c> (the values GET_STATE puts on the wire).</summary>
public enum DomainState
{
    /// <summary><c>VIR_DOMAIN_RUNNING</c>: the disks are open and served to the guest.</summary>
    Running = 1,

    /// <summary><c>VIR_DOMAIN_PAUSED</c>: running, with every guest request held at its <see cref="Disks.GuestGate"/>.</summary>
    Paused = 3,

    /// <summary><c>VIR_DOMAIN_SHUTOFF</c>: defined, nothing open.</summary>
    ShutOff = 5,
}

/// <summary>libvirt's <c>VIR_DOMAIN_UNDEFINE_*</c> flags (spec §4.1, §4.5).</summary>
[Flags]
public enum DomainUndefineFlags
{
    None = 0,

    /// <summary><c>MANAGED_SAVE</c>: Tidemark keeps no saved state, so there is nothing to remove.</summary>
    ManagedSave = 1 << 0,

    /// <summary><c>SNAPSHOTS_METADATA</c>: Tidemark keeps no snapshots, so there is nothing to remove.</summary>
    SnapshotsMetadata = 1 << 1,

    /// <summary><c>NVRAM</c>: no NVRAM file is managed.</summary>
    Nvram = 1 << 2,

    /// <summary><c>KEEP_NVRAM</c>: no NVRAM file is managed.</summary>
    KeepNvram = 1 << 3,

    /// <summary><c>CHECKPOINTS_METADATA</c>: drop the checkpoint metadata of an inactive domain (the bitmaps stay in the images).</summary>
    CheckpointsMetadata = 1 << 4,

    /// <summary><c>TPM</c> (libvirt 8.9): no TPM state is managed.</summary>
    Tpm = 1 << 5,

    /// <summary><c>KEEP_TPM</c> (libvirt 8.9): no TPM state is managed. virt-manager and many scripts pass it with KEEP_NVRAM.</summary>
    KeepTpm = 1 << 6,
}
