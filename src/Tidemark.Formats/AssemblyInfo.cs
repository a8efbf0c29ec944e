using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Tidemark.Formats.Tests")]
