using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Tidemark.Nbd.Tests.Support;

/// <summary>Keeps every log line the server writes, so tests can check that a cause was logged.</summary>
public sealed class LogRecorder : ILoggerFactory, ILoggerProvider, ILogger
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyCollection<string> Lines => _lines;

    public bool Contains(string text) => _lines.Any(l => l.Contains(text, StringComparison.Ordinal));

    /// <summary>
    /// True once a line containing <paramref name="text"/> is logged: the server logs a failure
    /// on its own schedule, after the peer may already have seen the connection drop.
    /// </summary>
    public async Task<bool> WaitForAsync(string text)
    {
        for (var i = 0; i < 300 && !Contains(text); i++)
        {
            await Task.Delay(50);
        }

        return Contains(text);
    }

    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        => _lines.Enqueue($"{logLevel}: {formatter(state, exception)}");

    public void Dispose()
    {
    }
}
