namespace Tidemark.Nbd.Client;

/// <summary>
/// Where an <see cref="NbdClient"/> is in its life (after libnbd's state machine, reduced to what a
/// caller can observe). Dead and Closed are terminal: the client is never reused.
/// </summary>
public enum NbdClientState
{
    /// <summary>Connecting and haggling options; no request may be sent.</summary>
    Negotiating,

    /// <summary>In transmission: requests may be sent, several at once.</summary>
    Ready,

    /// <summary>NBD_CMD_DISC was sent or the client was disposed.</summary>
    Closed,

    /// <summary>The connection broke or the server broke the protocol; every pending request failed.</summary>
    Dead,
}
