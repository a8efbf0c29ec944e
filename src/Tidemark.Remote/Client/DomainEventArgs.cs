using Tidemark.Remote.Protocol;

namespace Tidemark.Remote.Client;

/// <summary>A lifecycle event (318) for a registered callback.</summary>
public sealed class DomainLifecycleEventArgs(int callbackId, RemoteDomain domain, DomainLifecycleEvent lifecycleEvent, int detail) : EventArgs
{
    public int CallbackId { get; } = callbackId;

    public RemoteDomain Domain { get; } = domain;

    public DomainLifecycleEvent Event { get; } = lifecycleEvent;

    public int Detail { get; } = detail;
}

/// <summary>A job-completed event (363): the completed job's statistics.</summary>
public sealed class JobCompletedEventArgs(int callbackId, RemoteDomain domain, IReadOnlyList<TypedParameter> statistics) : EventArgs
{
    public int CallbackId { get; } = callbackId;

    public RemoteDomain Domain { get; } = domain;

    public IReadOnlyList<TypedParameter> Statistics { get; } = statistics;
}

/// <summary>A device-added (354) or device-removed (333) event: the device's alias.</summary>
public sealed class DeviceEventArgs(int callbackId, RemoteDomain domain, string alias, bool added) : EventArgs
{
    public int CallbackId { get; } = callbackId;

    public RemoteDomain Domain { get; } = domain;

    public string Alias { get; } = alias;

    /// <summary>True for device-added, false for device-removed.</summary>
    public bool Added { get; } = added;
}

/// <summary>An io-error (322) or io-error-reason (324) event: the disk's source and alias, the action, and (324 only) the reason.</summary>
public sealed class IoErrorEventArgs(int callbackId, RemoteDomain domain, string sourcePath, string alias, IoErrorAction action, string? reason) : EventArgs
{
    public int CallbackId { get; } = callbackId;

    public RemoteDomain Domain { get; } = domain;

    public string SourcePath { get; } = sourcePath;

    public string Alias { get; } = alias;

    public IoErrorAction Action { get; } = action;

    /// <summary>The reason ("enospc", or empty) of an io-error-reason event; null for an io-error event.</summary>
    public string? Reason { get; } = reason;
}
