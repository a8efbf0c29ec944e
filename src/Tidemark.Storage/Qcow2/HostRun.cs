namespace Tidemark.Storage.Qcow2;

/// <summary>
/// Guest bytes <c>[Offset, Offset + Length)</c> of one qcow2 layer, stored in its file from
/// <see cref="Host"/> on without a jump; null where the layer has no plain host range for them
/// (unallocated, zero-plain or compressed clusters).
/// </summary>
public readonly record struct HostRun(long Offset, long Length, long? Host);
