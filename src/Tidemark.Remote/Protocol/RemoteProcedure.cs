namespace Tidemark.Remote.Protocol;

/// <summary>
/// Procedure numbers of program REMOTE v1 that Tidemark speaks (libvirt-rpc.md §5), with
/// remote_protocol.x's names. Anything else is answered NO_SUPPORT.
/// </summary>
public enum RemoteProcedure : uint
{
    ConnectOpen = 1,
    ConnectClose = 2,
    ConnectGetType = 3,
    ConnectGetVersion = 4,
    NodeGetInfo = 6,
    DomainAttachDevice = 8,
    DomainCreate = 9,
    DomainCreateXml = 10,
    DomainDefineXml = 11,
    DomainDestroy = 12,
    DomainDetachDevice = 13,
    DomainGetXmlDesc = 14,
    DomainGetAutostart = 15,
    DomainGetInfo = 16,
    DomainGetOsType = 19,
    DomainLookupById = 22,
    DomainLookupByName = 23,
    DomainLookupByUuid = 24,
    DomainResume = 28,
    DomainSetAutostart = 29,
    DomainShutdown = 33,
    DomainSuspend = 34,
    DomainUndefine = 35,
    ConnectGetHostname = 59,
    DomainBlockStats = 64,
    ConnectSupportsFeature = 60,
    AuthList = 66,
    ConnectGetUri = 110,
    DomainIsActive = 150,
    DomainIsPersistent = 151,
    ConnectGetLibVersion = 157,
    DomainAttachDeviceFlags = 160,
    DomainDetachDeviceFlags = 161,
    DomainGetJobInfo = 163,
    DomainUpdateDeviceFlags = 174,
    DomainHasManagedSaveImage = 183,
    DomainAbortJob = 164,
    DomainGetBlockInfo = 194,
    DomainCreateWithFlags = 196,
    DomainGetState = 212,
    DomainUndefineFlags = 231,
    DomainDestroyFlags = 234,
    DomainGetBlockJobInfo = 238,
    DomainBlockStatsFlags = 243,
    DomainBlockResize = 251,
    DomainShutdownFlags = 258,
    DomainGetDiskErrors = 263,
    ConnectListAllDomains = 273,
    DomainGetJobStats = 298,
    ConnectDomainEventCallbackRegisterAny = 316,
    ConnectDomainEventCallbackDeregisterAny = 317,

    /// <summary>MESSAGE server→client: a lifecycle event for a registered callback.</summary>
    DomainEventCallbackLifecycle = 318,

    /// <summary>MESSAGE server→client: a disk's block job ended (BLOCK_JOB, the disk's source path).</summary>
    DomainEventCallbackIoError = 322,
    DomainEventCallbackIoErrorReason = 324,
    DomainEventCallbackBlockJob = 326,

    /// <summary>MESSAGE server→client: a drive's tray opened or closed (its alias).</summary>
    DomainEventCallbackTrayChange = 328,

    /// <summary>MESSAGE server→client: a device left the running domain (its alias).</summary>
    DomainEventCallbackDeviceRemoved = 333,
    DomainFsFreeze = 335,
    DomainFsThaw = 336,
    DomainGetTime = 337,
    DomainGetFsInfo = 349,
    DomainGetHostname = 277,
    ConnectGetAllDomainStats = 344,

    /// <summary>MESSAGE server→client: a disk's block job ended (BLOCK_JOB_2, the disk's target dev).</summary>
    DomainEventBlockJob2 = 339,
    DomainDefineXmlFlags = 350,

    /// <summary>MESSAGE server→client: a device joined the running domain (its alias).</summary>
    DomainEventCallbackDeviceAdded = 354,
    DomainRename = 358,
    ConnectRegisterCloseCallback = 360,
    ConnectUnregisterCloseCallback = 361,

    /// <summary>MESSAGE server→client: a job ended, with its completed statistics.</summary>
    DomainEventCallbackJobCompleted = 363,
    StoragePoolLookupByTargetPath = 391,
    DomainDetachDeviceAlias = 392,
    DomainCheckpointCreateXml = 411,
    DomainCheckpointGetXmlDesc = 412,
    DomainListAllCheckpoints = 413,
    DomainCheckpointListAllChildren = 414,
    DomainCheckpointLookupByName = 415,
    DomainCheckpointGetParent = 416,
    DomainCheckpointDelete = 417,
    DomainGetGuestInfo = 418,
    DomainBackupBegin = 421,
    DomainBackupGetXmlDesc = 422,
    DomainAbortJobFlags = 442,
    DomainFdAssociate = 443,
}
