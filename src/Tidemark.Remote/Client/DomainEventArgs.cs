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
