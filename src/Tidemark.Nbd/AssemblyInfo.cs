using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Tidemark.Nbd.Tests")]
