using Tidemark.Remote.Protocol;

namespace Tidemark.Remote.Server;

/// <summary>
/// What a read-only connection (CONNECT_OPEN with <c>VIR_CONNECT_RO</c>) may not do. libvirt's
/// public API refuses these calls on such a connection (<c>virCheckReadOnlyGoto</c> in
/// src/libvirt-domain.c and src/libvirt-domain-checkpoint.c): in the client library, and again
/// in libvirtd, whose connection is opened with the client's flags; so a client that speaks the
/// protocol itself is refused as virsh -r is.
/// </summary>
internal static class ReadOnlyAccess
{
    // <libvirt/libvirt-host.h>: VIR_CONNECT_RO.
    public const uint ConnectReadOnly = 1;

    // virDomainXMLFlags: VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_MIGRATABLE; and
    // virDomainCheckpointXMLFlags: VIR_DOMAIN_CHECKPOINT_XML_SECURE.
    private const uint DomainXmlSecureOrMigratable = 0x1 | 0x8;
    private const uint CheckpointXmlSecure = 0x1;

    /// <summary>Refuses <paramref name="procedure"/> on a read-only connection if it changes anything.</summary>
    /// <exception cref="LibvirtError">OPERATION_DENIED, "read only access prevents virDomainCheckpointDelete".</exception>
    public static void Check(RemoteConnection connection, RemoteProcedure procedure)
    {
        if (!connection.IsReadOnly || !Changes(procedure))
        {
            return;
        }

        var domain = procedure is RemoteProcedure.DomainCheckpointCreateXml or RemoteProcedure.DomainCheckpointDelete
            ? VirErrorDomain.DomainCheckpoint
            : VirErrorDomain.Domain;
        throw LibvirtError.Create(VirErrorNumber.OperationDenied, domain, $"read only access prevents {ApiNames.Of((uint)procedure)}");
    }

    /// <summary>virDomainGetXMLDesc's own check: secure or migratable XML needs a read-write connection.</summary>
    public static void CheckDomainXml(RemoteConnection connection, uint flags)
    {
        if (connection.IsReadOnly && (flags & DomainXmlSecureOrMigratable) != 0)
        {
            throw LibvirtError.Create(VirErrorNumber.OperationDenied, VirErrorDomain.Domain, "virDomainGetXMLDesc with secure flag");
        }
    }

    /// <summary>virDomainCheckpointGetXMLDesc's own check: secure XML needs a read-write connection.</summary>
    public static void CheckCheckpointXml(RemoteConnection connection, uint flags)
    {
        if (connection.IsReadOnly && (flags & CheckpointXmlSecure) != 0)
        {
            throw LibvirtError.Create(VirErrorNumber.OperationDenied, VirErrorDomain.DomainCheckpoint, "virDomainCheckpointGetXMLDesc with secure flag");
        }
    }

    /// <summary>
    /// The procedures served here whose API libvirt 11.3 guards with virCheckReadOnlyGoto: those
    /// that change something, and the guest-agent queries (an agent runs inside the guest).
    /// </summary>
    private static bool Changes(RemoteProcedure procedure) => procedure is
        RemoteProcedure.DomainAbortJob or RemoteProcedure.DomainAbortJobFlags
        or RemoteProcedure.DomainBackupBegin
        or RemoteProcedure.DomainCheckpointCreateXml or RemoteProcedure.DomainCheckpointDelete
        or RemoteProcedure.DomainCreate or RemoteProcedure.DomainCreateWithFlags or RemoteProcedure.DomainCreateXml
        or RemoteProcedure.DomainDefineXml or RemoteProcedure.DomainDefineXmlFlags
        or RemoteProcedure.DomainDestroy or RemoteProcedure.DomainDestroyFlags
        or RemoteProcedure.DomainFdAssociate
        or RemoteProcedure.DomainFsFreeze or RemoteProcedure.DomainFsThaw
        or RemoteProcedure.DomainGetFsInfo or RemoteProcedure.DomainGetGuestInfo
        or RemoteProcedure.DomainGetHostname or RemoteProcedure.DomainGetTime
        or RemoteProcedure.DomainRename
        or RemoteProcedure.DomainBlockResize
        or RemoteProcedure.DomainAttachDevice or RemoteProcedure.DomainAttachDeviceFlags
        or RemoteProcedure.DomainDetachDevice or RemoteProcedure.DomainDetachDeviceFlags or RemoteProcedure.DomainDetachDeviceAlias
        or RemoteProcedure.DomainUpdateDeviceFlags
        or RemoteProcedure.DomainResume or RemoteProcedure.DomainSuspend
        or RemoteProcedure.DomainSetAutostart
        or RemoteProcedure.DomainShutdown or RemoteProcedure.DomainShutdownFlags
        or RemoteProcedure.DomainUndefine or RemoteProcedure.DomainUndefineFlags;
}
