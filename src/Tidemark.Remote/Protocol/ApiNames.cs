namespace Tidemark.Remote.Protocol;

/// <summary>
/// The public libvirt API behind a procedure number, for the NO_SUPPORT text clients print
/// ("this function is not supported by the connection driver: virDomainGetHostname") and for
/// logs. Covers Tidemark's procedures and the unimplemented ones stock clients commonly try.
/// </summary>
public static class ApiNames
{
    private static readonly Dictionary<uint, string> Names = new()
    {
        [1] = "virConnectOpen",
        [2] = "virConnectClose",
        [3] = "virConnectGetType",
        [4] = "virConnectGetVersion",
        [6] = "virNodeGetInfo",
        [8] = "virDomainAttachDevice",
        [9] = "virDomainCreate",
        [10] = "virDomainCreateXML",
        [11] = "virDomainDefineXML",
        [12] = "virDomainDestroy",
        [13] = "virDomainDetachDevice",
        [14] = "virDomainGetXMLDesc",
        [15] = "virDomainGetAutostart",
        [16] = "virDomainGetInfo",
        [17] = "virDomainGetMaxMemory",
        [18] = "virDomainGetMaxVcpus",
        [19] = "virDomainGetOSType",
        [20] = "virDomainGetVcpus",
        [22] = "virDomainLookupByID",
        [23] = "virDomainLookupByName",
        [24] = "virDomainLookupByUUID",
        [27] = "virDomainReboot",
        [28] = "virDomainResume",
        [29] = "virDomainSetAutostart",
        [33] = "virDomainShutdown",
        [34] = "virDomainSuspend",
        [35] = "virDomainUndefine",
        [59] = "virConnectGetHostname",
        [60] = "virConnectSupportsFeature",
        [64] = "virDomainBlockStats",
        [65] = "virDomainInterfaceStats",
        [110] = "virConnectGetURI",
        [121] = "virDomainGetSecurityLabel",
        [122] = "virNodeGetSecurityModel",
        [150] = "virDomainIsActive",
        [151] = "virDomainIsPersistent",
        [157] = "virConnectGetLibVersion",
        [159] = "virDomainMemoryStats",
        [160] = "virDomainAttachDeviceFlags",
        [161] = "virDomainDetachDeviceFlags",
        [163] = "virDomainGetJobInfo",
        [164] = "virDomainAbortJob",
        [174] = "virDomainUpdateDeviceFlags",
        [182] = "virDomainManagedSave",
        [183] = "virDomainHasManagedSaveImage",
        [185] = "virDomainSnapshotCreateXML",
        [194] = "virDomainGetBlockInfo",
        [196] = "virDomainCreateWithFlags",
        [202] = "virDomainIsUpdated",
        [212] = "virDomainGetState",
        [231] = "virDomainUndefineFlags",
        [234] = "virDomainDestroyFlags",
        [237] = "virDomainBlockJobAbort",
        [238] = "virDomainGetBlockJobInfo",
        [243] = "virDomainBlockStatsFlags",
        [245] = "virDomainReset",
        [251] = "virDomainBlockResize",
        [258] = "virDomainShutdownFlags",
        [263] = "virDomainGetDiskErrors",
        [265] = "virDomainGetMetadata",
        [273] = "virConnectListAllDomains",
        [274] = "virDomainListAllSnapshots",
        [277] = "virDomainGetHostname",
        [278] = "virDomainGetSecurityLabelList",
        [281] = "virConnectListAllStoragePools",
        [283] = "virConnectListAllNetworks",
        [298] = "virDomainGetJobStats",
        [316] = "virConnectDomainEventRegisterAny",
        [317] = "virConnectDomainEventDeregisterAny",
        [335] = "virDomainFSFreeze",
        [336] = "virDomainFSThaw",
        [337] = "virDomainGetTime",
        [338] = "virDomainSetTime",
        [349] = "virDomainGetFSInfo",
        [353] = "virDomainInterfaceAddresses",
        [357] = "virDomainSetUserPassword",
        [344] = "virConnectGetAllDomainStats",
        [350] = "virDomainDefineXMLFlags",
        [358] = "virDomainRename",
        [360] = "virConnectRegisterCloseCallback",
        [361] = "virConnectUnregisterCloseCallback",
        [391] = "virStoragePoolLookupByTargetPath",
        [392] = "virDomainDetachDeviceAlias",
        [411] = "virDomainCheckpointCreateXML",
        [412] = "virDomainCheckpointGetXMLDesc",
        [413] = "virDomainListAllCheckpoints",
        [414] = "virDomainCheckpointListAllChildren",
        [415] = "virDomainCheckpointLookupByName",
        [416] = "virDomainCheckpointGetParent",
        [417] = "virDomainCheckpointDelete",
        [418] = "virDomainGetGuestInfo",
        [421] = "virDomainBackupBegin",
        [422] = "virDomainBackupGetXMLDesc",
        [442] = "virDomainAbortJobFlags",
        [443] = "virDomainFDAssociate",
    };

    // qemu_protocol.x's procedures; 6 is the monitor event, which only the server sends.
    private static readonly Dictionary<uint, string> QemuNames = new()
    {
        [1] = "virDomainQemuMonitorCommand",
        [2] = "virDomainQemuAttach",
        [3] = "virDomainQemuAgentCommand",
        [4] = "virConnectDomainQemuMonitorEventRegister",
        [5] = "virConnectDomainQemuMonitorEventDeregister",
        [7] = "virDomainQemuMonitorCommandWithFiles",
    };

    /// <summary>libvirt's API name for <paramref name="procedure"/>, or "procedure N" when it is not in the table.</summary>
    public static string Of(uint procedure) => Names.TryGetValue(procedure, out var name) ? name : $"procedure {procedure}";

    /// <summary>
    /// The API behind a procedure of <paramref name="program"/> (REMOTE or QEMU); for a QEMU
    /// procedure with none, libvirtd's "unknown procedure: N" (virNetServerProgramDispatchCall).
    /// </summary>
    public static string Of(uint program, uint procedure) => program == RemoteWire.QemuProgram
        ? QemuNames.TryGetValue(procedure, out var name) ? name : $"unknown procedure: {procedure}"
        : Of(procedure);
}
