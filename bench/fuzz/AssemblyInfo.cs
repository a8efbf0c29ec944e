using System.Runtime.CompilerServices;

// The suite replays the corpus and the findings through the harnesses themselves.
[assembly: InternalsVisibleTo("Tidemark.Nbd.Tests")]
