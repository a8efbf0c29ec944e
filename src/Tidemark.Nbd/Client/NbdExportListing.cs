namespace Tidemark.Nbd.Client;

/// <summary>An export as LIST and INFO describe it.</summary>
public sealed record NbdExportListing(string Name, string? Description);
