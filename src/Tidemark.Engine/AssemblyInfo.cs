using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Tidemark.Engine.Tests")]
[assembly: InternalsVisibleTo("Tidemark.Engine.CrashHost")]
