namespace Tidemark.Backup.Prune;

/// <summary>
/// A fold in progress (<c>DOMAIN/.fold.json</c>), written before the first file changes and
/// removed after the last: <see cref="NewBase"/> becomes the domain's oldest backup and the
/// backups in <see cref="Dropped"/> go. Every step of a fold is idempotent, so a command that
/// finds this record after a crash runs the fold again to its end (<see cref="ChainFold.FinishPendingAsync"/>).
/// </summary>
public sealed record PendingFold(string Domain, string NewBase, IReadOnlyList<string> Dropped, DateTimeOffset Started);
