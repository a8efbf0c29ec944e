using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Tidemark.Backup.Tests")]
