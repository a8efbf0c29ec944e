using System.Text;
using System.Text.Json;

namespace Tidemark.Cli.Commands;

/// <summary>A command's <c>--json</c> output: one indented document written by hand, so no reflection-based serializer reaches the trimmed executable.</summary>
internal static class JsonText
{
    public static string Write(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            write(writer);
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
