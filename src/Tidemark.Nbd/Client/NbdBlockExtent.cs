namespace Tidemark.Nbd.Client;

/// <summary>One block-status extent of one context: a length and the context's flags for it.</summary>
public readonly record struct NbdBlockExtent(uint Length, uint Flags);
