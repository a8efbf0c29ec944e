using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Tidemark.Engine.Tests")]
