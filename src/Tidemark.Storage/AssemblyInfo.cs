using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Tidemark.Storage.Tests")]
