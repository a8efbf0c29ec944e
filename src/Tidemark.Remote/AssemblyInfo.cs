using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Tidemark.Remote.Tests")]
